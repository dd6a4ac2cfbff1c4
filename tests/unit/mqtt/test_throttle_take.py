"""The throttle's fast-path check: a throttled device publishes at once while it has tokens."""

from __future__ import annotations

from losant_async.mqtt import ThrottleConfig
from losant_async.mqtt._throttle import Throttle


def test_throttle_take_books_only_when_both_buckets_have_a_token() -> None:

    now = [0.0]
    throttle = Throttle(ThrottleConfig(per_topic=4, per_connection=6), clock=lambda: now[0])
    # per topic: a burst of 2, per connection: a burst of 3
    assert [throttle.take("a") for _ in range(3)] == [True, True, False]
    assert throttle.take("b") is True
    assert throttle.take("c") is False  # the connection's bucket is empty; "c" keeps its tokens
    now[0] += 15.0
    assert throttle.take("c") and throttle.take("c") and not throttle.take("c")
    assert throttle.waited == 0.0
