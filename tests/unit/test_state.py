"""The state rules shared by MQTT and REST: what a state may hold, what a time may be, distinct stamps."""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from losant_async._state import (
    MAX_STRING_CHARS,
    KeyedStamper,
    Stamper,
    check_state_data,
    check_state_time,
)
from losant_async.errors import ValidationError

# -- check_state_data ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"t": 21.5},
        {"n": 0, "neg": -(2**63), "big": 2**64 - 1},
        {"flag": True, "off": False},
        {"s": "", "long": "x" * MAX_STRING_CHARS},
        {"a_b-C9": 1.0, "x" * 255: 1},
        OrderedDict(a=1),
        {"tiny": 5e-324, "huge": 1.7976931348623157e308},
    ],
)
def test_states_losant_stores_pass(data: dict[str, Any]) -> None:
    check_state_data(data)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (math.nan, "NaN"),
        (math.inf, "infinity"),
        (-math.inf, "infinity"),
        (2**64, "64 bits"),
        (-(2**63) - 1, "64 bits"),
        (10**30, "64 bits"),
        ("x" * (MAX_STRING_CHARS + 1), "limit is 65536"),
        (datetime(2024, 1, 1), "datetime"),
        (datetime(2024, 1, 1, tzinfo=timezone.utc), "datetime"),
        (b"raw", "bytes"),
        (bytearray(b"raw"), "bytearray"),
        ({1, 2}, "set"),
        (frozenset(), "frozenset"),
        ([1, 2], "list"),
        ({"nested": 1}, "dict"),
        (None, "NoneType"),
        (Decimal("1.5"), "Decimal"),
        (Fraction(1, 3), "Fraction"),
        (1 + 2j, "complex"),
    ],
)
def test_values_json_or_losant_would_change_are_refused(value: object, words: str) -> None:
    with pytest.raises(ValidationError, match=words) as caught:
        check_state_data({"attr": value})
    assert "'attr'" in str(caught.value)  # names the attribute


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 256,
        "temp\n",  # $ would accept a trailing newline; the rule must not
        "\ntemp",
        "te mp",
        "temp.c",
        "t/emp",
        "\u0661\u0662",  # Arabic-Indic digits
        "\uff11",  # fullwidth one
        "\u0967",  # Devanagari one
        "caf\u00e9",
        "\u212a",  # Kelvin sign: case-folds to K under re.IGNORECASE, must not pass
        1,
        None,
        ("a",),
    ],
)
def test_bad_attribute_names_are_refused(name: object) -> None:
    with pytest.raises(ValidationError, match="attribute name"):
        check_state_data({name: 1})


def test_a_bad_name_is_refused_even_after_good_names_were_cached() -> None:
    check_state_data({"cached": 1})
    check_state_data({"cached": 2})
    with pytest.raises(ValidationError):
        check_state_data({"cached\n": 1})


@pytest.mark.parametrize("data", [None, [], "data", [("a", 1)], 42])
def test_data_must_be_a_mapping(data: object) -> None:
    with pytest.raises(ValidationError, match="mapping"):
        check_state_data(data)


def test_empty_data_is_refused() -> None:
    with pytest.raises(ValidationError, match="empty"):
        check_state_data({})


def test_a_long_value_is_not_echoed_whole_in_the_message() -> None:
    with pytest.raises(ValidationError) as caught:
        check_state_data({"y" * 300: 1})
    assert len(str(caught.value)) < 200


def test_bool_and_int_subclasses_keep_their_rules() -> None:
    class Count(int):
        pass

    check_state_data({"c": Count(3)})
    with pytest.raises(ValidationError, match="64 bits"):
        check_state_data({"c": Count(2**70)})

    class Ratio(float):
        pass

    with pytest.raises(ValidationError, match="NaN"):
        check_state_data({"r": Ratio("nan")})


# -- check_state_time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 1, 1, tzinfo=timezone.utc),
        datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
        1_700_000_000_000,
        1_700_000_000,
        -5000,
        0,
        1.7e12,
        "2024-01-01T00:00:00Z",
        {"$date": "2024-01-01T00:00:00.000Z"},
        {"$date": 1_700_000_000_000},
    ],
)
def test_usable_times_pass(value: object) -> None:
    check_state_time(value)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (datetime(2024, 1, 1), "naive"),
        (math.nan, "finite"),
        (math.inf, "finite"),
        (-math.inf, "finite"),
        ("", "blank"),
        ("   ", "blank"),
        (True, "boolean"),
        (False, "boolean"),
        ({"$date": ""}, r"\$date"),
        ({"$date": math.nan}, r"\$date"),
        ({"$date": True}, r"\$date"),
        ({"$date": "x", "extra": 1}, "dict"),
        ({}, "dict"),
        (b"2024", "bytes"),
        (None, "NoneType"),
        ([1], "list"),
    ],
)
def test_times_losant_would_read_as_now_or_not_at_all_are_refused(value: object, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        check_state_time(value)


def test_time_error_names_the_field() -> None:
    with pytest.raises(ValidationError, match=r"^when "):
        check_state_time(math.nan, what="when")


# -- Stamper / KeyedStamper ---------------------------------------------------------------------


def clock_of(readings: list[int]) -> Callable[[], int]:
    it = iter(readings)
    last = [readings[0]]

    def clock() -> int:
        last[0] = next(it, last[0])
        return last[0]

    return clock


def strictly_increasing(values: list[int]) -> bool:
    return all(b > a for a, b in itertools.pairwise(values))


def test_stamps_follow_a_moving_clock() -> None:
    stamp = Stamper(clock_of([1000, 1005, 1010]))
    assert [stamp(), stamp(), stamp()] == [1000, 1005, 1010]


def test_stamps_on_a_clock_that_stands_still_are_strictly_increasing() -> None:
    stamp = Stamper(lambda: 5000)
    stamps = [stamp() for _ in range(10_000)]
    assert stamps[0] == 5000
    assert stamps == list(range(5000, 15_000))


def test_stamps_on_a_clock_that_goes_backwards_never_repeat_or_fall() -> None:
    readings = [10_000, 10_001, 9_000, 9_500, 10_001, 10_002, 10_010, 5, 10_011]
    stamp = Stamper(clock_of(readings))
    stamps = [stamp() for _ in readings]
    assert strictly_increasing(stamps)
    assert stamps[:2] == [10_000, 10_001]
    assert stamps[2:6] == [10_002, 10_003, 10_004, 10_005]  # held ahead while the clock is behind
    assert stamps[6] == 10_010  # back in step once the clock passes the last stamp
    assert stamps[7:] == [10_011, 10_012]


def test_stamps_run_ahead_under_a_burst_then_fall_back_in_step() -> None:
    now = [1000]
    stamp = Stamper(lambda: now[0])
    burst = [stamp() for _ in range(50)]
    assert burst == list(range(1000, 1050))
    now[0] = 2000
    assert stamp() == 2000


def test_an_explicit_time_seen_is_not_reused_by_a_later_stamp() -> None:
    now = [1000]
    stamp = Stamper(lambda: now[0])
    assert stamp() == 1000
    now[0] = 1010
    stamp.seen(1010)  # the caller sent a state at 1010 explicitly
    assert stamp() == 1011
    stamp.seen(500)  # older than the last stamp: changes nothing
    stamp.seen(99_999)  # in the future: not adopted, so stamps do not jump ahead
    assert stamp() == 1012


def test_keyed_stamps_are_strictly_increasing_per_key_and_independent() -> None:
    stamp = KeyedStamper(lambda: 7000)
    a = [stamp("a") for _ in range(100)]
    b = [stamp("b") for _ in range(3)]
    assert a == list(range(7000, 7100))
    assert b == [7000, 7001, 7002]  # another key starts at the clock, not after "a"


def test_keyed_stamper_with_a_backwards_clock() -> None:
    readings = [100, 100, 50, 40, 200]
    stamp = KeyedStamper(clock_of(readings))
    stamps = [stamp("k") for _ in readings]
    assert strictly_increasing(stamps)
    assert stamps == [100, 101, 102, 103, 200]


def test_keyed_stamper_is_bounded() -> None:
    stamp = KeyedStamper(lambda: 1, max_keys=3)
    for key in "abcd":
        stamp(key)
    assert len(stamp._stampers) == 3
    assert "a" not in stamp._stampers and "d" in stamp._stampers
