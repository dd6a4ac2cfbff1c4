"""The reconnect loop with fake connections, a fake clock and a recording sleep: no broker, no waiting."""

from __future__ import annotations

import random
from typing import Any

import pytest

from losant_async.errors import AuthenticationRefusedError, ConnectionLostError
from losant_async.mqtt import Backoff, ConnectionEvent, ConnectionState, Device, DisconnectKind
from losant_async.mqtt._supervisor import Activity, Supervisor


class Script:
    """Plays a list of outcomes: an exception from connect, or a connection that lasts N s and saw M messages."""

    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        self.now = 0.0
        self.sleeps: list[float] = []
        self.events: list[ConnectionEvent] = []
        self.failed: BaseException | None = None
        self.connects = 0
        self.activity = Activity(15.0, lambda: self.now)

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay

    async def connect(self) -> object:
        self.connects += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def serve(self, conn: object) -> None:
        assert isinstance(conn, tuple)
        lasted: float = conn[0]
        messages: int = conn[1]
        self.activity.add(messages)
        self.now += lasted

    def closing(self) -> bool:
        return not self.outcomes or self.failed is not None

    def supervisor(self, ban_detection: bool) -> Supervisor:
        return Supervisor(
            connect=self.connect,
            serve=self.serve,
            emit=self.events.append,
            fail=lambda exc: setattr(self, "failed", exc),
            backoff=Backoff(),
            ban_detection=ban_detection,
            burst_threshold=30,
            activity=self.activity,
            is_closing=self.closing,
            lost_reason=lambda c: "lost",
            rng=random.Random(3),
            clock=self.clock,
            sleep=self.sleep,
        )


async def test_refused_credentials_stop_at_once() -> None:
    script = Script([AuthenticationRefusedError("refused", 5), (1.0, 0)])
    await script.supervisor(ban_detection=True).run()
    assert isinstance(script.failed, AuthenticationRefusedError)
    assert script.connects == 1 and script.sleeps == []
    assert script.events[-1].state is ConnectionState.FAILED


async def test_network_faults_back_off_exponentially_from_a_second() -> None:
    faults = [ConnectionLostError("down") for _ in range(6)]
    script = Script([*faults, (100.0, 0)])
    await script.supervisor(ban_detection=False).run()
    assert len(script.sleeps) == 6
    for attempt, delay in enumerate(script.sleeps, start=1):
        assert 0 <= delay <= min(60.0, 2.0 ** (attempt - 1))
    attempts = [e.attempt for e in script.events if e.state is ConnectionState.RECONNECTING]
    assert attempts == [1, 2, 3, 4, 5, 6]


async def test_disconnect_after_a_burst_waits_like_a_ban_and_longer_on_repeats() -> None:
    script = Script([(1.0, 40), (1.0, 40), (1.0, 0), (1.0, 0)])
    sup = script.supervisor(ban_detection=True)
    await sup.run()
    bans = [e for e in script.events if e.state is ConnectionState.DISCONNECTED]
    assert [e.kind for e in bans[:2]] == [DisconnectKind.THROTTLE_BAN] * 2
    assert script.sleeps[0] >= 30.0 and script.sleeps[1] >= 60.0
    assert sup.reconnects == 3


async def test_refusal_during_a_suspected_ban_is_waited_out_not_fatal() -> None:
    script = Script([(1.0, 40), AuthenticationRefusedError("banned", 5), (1.0, 0)])
    await script.supervisor(ban_detection=True).run()
    assert script.failed is None
    assert all(s >= 30.0 for s in script.sleeps[:2])


async def test_without_ban_detection_a_burst_is_a_network_fault() -> None:
    script = Script([(1.0, 400), (1.0, 0)])
    await script.supervisor(ban_detection=False).run()
    assert script.sleeps[0] <= 1.0


def test_device_arguments_are_checked_before_anything_starts() -> None:
    from losant_async.errors import ValidationError

    with pytest.raises(ValidationError):
        Device("d" * 24, "", "s")
    with pytest.raises(ValidationError):
        Device("d" * 24, "k", "s", transport="udp")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Device("d" * 24, "k", "s", qos=2)
    with pytest.raises(ValidationError):
        Device("d" * 24, "k", "s", port=70000)
    device = Device("d" * 24, "the-key", "the-secret", host="127.0.0.1", transport="tcp")
    assert "the-secret" not in repr(device) and "the-key" not in repr(device)
    assert device.port == 1883
    assert Device("d" * 24, "k", "s").port == 8883
    assert Device("d" * 24, "k", "s", transport="wss").port == 443


def test_throttle_is_on_by_default_only_against_losant() -> None:
    assert Device("d" * 24, "k", "s")._config.throttle is not None
    assert Device("d" * 24, "k", "s")._config.ban_detection is True
    assert Device("d" * 24, "k", "s", host="127.0.0.1")._config.throttle is None
    assert Device("d" * 24, "k", "s", host="127.0.0.1")._config.ban_detection is False
    assert Device("d" * 24, "k", "s", throttle=False)._config.throttle is None
    assert Device("d" * 24, "k", "s", host="127.0.0.1", throttle=True)._config.throttle is not None


async def test_a_refusal_after_connecting_is_a_ban_on_any_host_growing_to_an_hour() -> None:
    refusals = [AuthenticationRefusedError("banned", 5) for _ in range(12)]
    script = Script([(1.0, 0), *refusals, (1.0, 0)])
    await script.supervisor(ban_detection=False).run()  # a private host: no burst heuristics
    assert script.failed is None
    bans = script.sleeps[1:]
    assert len(bans) == 12
    assert all(30.0 <= s <= 3600.0 for s in bans)
    assert bans[0] <= 37.5 and bans[1] >= 60.0 and bans[-1] == 3600.0
    assert [e.kind for e in script.events if e.state is ConnectionState.RECONNECTING][1:] == (
        [DisconnectKind.THROTTLE_BAN] * 12
    )


async def test_a_tls_verification_failure_is_fatal_at_once() -> None:
    from losant_async.errors import TLSVerificationError

    script = Script([(1.0, 0), TLSVerificationError("wrong CA"), (1.0, 0)])
    await script.supervisor(ban_detection=False).run()
    assert isinstance(script.failed, TLSVerificationError)
    assert script.events[-1].state is ConnectionState.FAILED
    assert script.events[-1].kind is DisconnectKind.TLS_REFUSED


async def test_known_credentials_make_a_first_refusal_a_ban() -> None:
    from losant_async.mqtt._supervisor import KnownCredentials

    known = KnownCredentials()
    digest = KnownCredentials.digest("host", "1883", "dev", "key", "secret")
    assert "secret" not in repr(digest)
    known.add(digest)
    script = Script([AuthenticationRefusedError("banned", 5), (1.0, 0)])
    sup = script.supervisor(ban_detection=False)
    sup._credentials, sup._known = digest, known
    await sup.run()
    assert script.failed is None and script.sleeps[0] >= 30.0


# -- issue 19: bans and refusals on any broker ----------------------------------------------------


@pytest.mark.parametrize("code", [3, 137, 138, 151, 159])
async def test_a_not_now_refusal_after_connecting_is_a_ban_growing_capped_and_jittered(code: int) -> None:
    from losant_async.errors import BrokerRefusedError

    refusals = [BrokerRefusedError("server unavailable", code) for _ in range(12)]
    script = Script([(1.0, 0), *refusals, (1.0, 0)])
    await script.supervisor(ban_detection=False).run()  # a private host: no burst heuristics
    assert script.failed is None
    bans = script.sleeps[1:]
    assert len(bans) == 12
    # Never a network-fault wait: at least ban_initial, doubling, jittered by at most a quarter, capped.
    assert 30.0 <= bans[0] <= 37.5 and 60.0 <= bans[1] <= 75.0 and bans[-1] == 3600.0
    assert len(set(bans[:6])) == 6
    assert all(e.kind is DisconnectKind.THROTTLE_BAN for e in script.events
               if e.state is ConnectionState.RECONNECTING and e.delay is not None and e.delay >= 30.0)


async def test_a_not_now_refusal_on_the_first_connect_is_retried_never_sooner_than_the_floor() -> None:
    from losant_async.errors import BrokerRefusedError

    script = Script([BrokerRefusedError("server unavailable", 3) for _ in range(4)] + [(1.0, 0)])
    await script.supervisor(ban_detection=False).run()
    assert script.failed is None  # "not now" is not "bad credentials"
    assert len(script.sleeps) == 4 and all(s >= 5.0 for s in script.sleeps)


def test_the_refusal_floor_holds_after_every_refusal_and_follows_a_shortened_ban_initial() -> None:
    rng = random.Random(0)
    backoff = Backoff(initial=0.05, cap=0.3)
    assert all(backoff.refused_delay(n, rng) >= 5.0 for n in range(1, 20))
    assert all(backoff.ban_delay(n, rng) >= 30.0 for n in range(1, 20))
    short = Backoff(initial=0.05, cap=0.3, ban_initial=0.5, ban_cap=2.0)
    assert short.floor == 0.5 and all(short.refused_delay(n, rng) >= 0.5 for n in range(1, 10))
    with pytest.raises(Exception, match="refusal_floor"):
        Backoff(refusal_floor=-1)


async def test_a_tls_handshake_failure_is_fatal_on_the_first_connect_only() -> None:
    from losant_async.errors import TLSHandshakeError

    script = Script([TLSHandshakeError("plain TCP?")])
    await script.supervisor(ban_detection=False).run()
    assert isinstance(script.failed, TLSHandshakeError) and script.sleeps == []
    later = Script([(1.0, 0), TLSHandshakeError("reset mid-handshake"), (1.0, 0)])
    await later.supervisor(ban_detection=False).run()
    assert later.failed is None and later.connects == 3
