"""Value generators of a scenario's attributes: pure, seeded per device, the same values in any shard.

A device's generators draw from one ``random.Random`` seeded from the
scenario's seed and the device's fleet index, and read only the state's time
(``t``, seconds since the epoch): no process state, so a device reports the
same values whichever shard, process or Ray actor runs it.
:class:`~._model.DeviceModel` turns a device type's attributes into one state per call.
This runs once per state at 10,000 states/s: generators are small slotted
objects whose ``next`` does the arithmetic inline.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable
from typing import Any

from ._scenario import (
    AttributeSpec,
    ChoiceGen,
    ConstantGen,
    CounterGen,
    DailyGen,
    GeneratorSpec,
    GpsRouteGen,
    GpsWalkGen,
    NormalGen,
    RampGen,
    RandomWalkGen,
    ReplayGen,
    SineGen,
    UniformGen,
)

__all__ = ["MISSING", "ValueFn", "device_seed", "make_generator", "set_parameter", "shape"]

ValueFn = Callable[[float], Any]
"""A generator: the value at time ``t`` (epoch seconds), or :data:`MISSING` to leave the attribute out."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

_TAU = 2.0 * math.pi
_floor = math.floor
_EARTH_M = 6_371_000.0


def device_seed(seed: int, index: int) -> int:
    """The seed of fleet device ``index``: from the scenario's seed and the index only (never process state)."""
    return random.Random(seed * 1_000_003 + index).getrandbits(63)


class _Constant:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def next(self, t: float) -> Any:
        return self.value


class _Choice:
    __slots__ = ("cum", "r", "total", "values")

    def __init__(self, g: ChoiceGen, rng: random.Random) -> None:
        self.values = list(g.values)
        weights = g.weights or [1.0] * len(g.values)
        self.cum = list(itertools.accumulate(weights))
        self.total = self.cum[-1]
        self.r = rng.random

    def next(self, t: float) -> Any:
        return self.values[bisect.bisect_right(self.cum, self.r() * self.total)]


class _Uniform:
    __slots__ = ("lo", "r", "span")

    def __init__(self, g: UniformGen, rng: random.Random) -> None:
        self.lo, self.span, self.r = g.min, g.max - g.min, rng.random

    def next(self, t: float) -> float:
        return self.lo + self.span * self.r()


class _Normal:
    __slots__ = ("hi", "lo", "mean", "r", "spare", "std")

    def __init__(self, g: NormalGen, rng: random.Random) -> None:
        self.mean, self.std, self.r = g.mean, g.std, rng.random
        self.lo = -math.inf if g.min is None else g.min
        self.hi = math.inf if g.max is None else g.max
        self.spare: float | None = None

    def next(self, t: float) -> float:
        # Box-Muller inline, keeping the pair's second value for the next state (what
        # random.gauss does, without its call): a normal attribute cost 0.4 us a state.
        z = self.spare
        if z is None:
            r = self.r
            mag = math.sqrt(-2.0 * math.log(1.0 - r()))
            angle = _TAU * r()
            z = mag * math.cos(angle)
            self.spare = mag * math.sin(angle)
        else:
            self.spare = None
        v = self.mean + self.std * z
        if v > self.hi:
            return self.hi
        if v < self.lo:
            return self.lo
        return v


class _Sine:
    __slots__ = ("amp", "offset", "period", "phase", "w")

    def __init__(self, g: SineGen, rng: random.Random) -> None:
        self.w = _TAU / g.period
        self.period = g.period
        self.amp, self.offset = g.amplitude, g.offset
        self.phase = rng.random() * _TAU * g.phase_spread

    def next(self, t: float) -> float:
        # The time within the cycle first: sin() of an epoch-sized angle loses precision.
        return self.offset + self.amp * math.sin(self.w * (t % self.period) + self.phase)


class _Walk:
    __slots__ = ("drift", "hi", "lo", "r", "step", "value")

    def __init__(self, g: RandomWalkGen, rng: random.Random) -> None:
        self.r = rng.random
        if g.start is not None:
            self.value = g.start
        else:
            assert g.start_min is not None and g.start_max is not None
            self.value = rng.uniform(g.start_min, g.start_max)
        self.step, self.drift = g.step, g.drift
        self.lo = -math.inf if g.min is None else g.min
        self.hi = math.inf if g.max is None else g.max

    def next(self, t: float) -> float:
        # A triangular step from random() directly: gauss() and uniform() are Python code; the
        # bounds by comparison, not min()/max() calls (this runs per attribute and state).
        r = self.r
        v = self.value + (r() + r() - 1.0) * self.step + self.drift
        if v > self.hi:
            v = self.hi
        elif v < self.lo:
            v = self.lo
        self.value = v
        return v

    def set(self, value: float) -> None:
        self.value = min(self.hi, max(self.lo, value))


class _Counter:
    __slots__ = ("start", "step", "value", "wrap")

    def __init__(self, g: CounterGen) -> None:
        self.start, self.step, self.wrap = g.start, g.step, g.wrap
        self.value = g.start - g.step

    def next(self, t: float) -> float:
        v = self.value + self.step
        if self.wrap is not None and (v >= self.wrap if self.step > 0 else v <= self.wrap):
            v = self.start
        self.value = v
        return v


class _Ramp:
    __slots__ = ("lo", "period", "phase", "span")

    def __init__(self, g: RampGen, rng: random.Random) -> None:
        self.lo, self.span, self.period = g.min, g.max - g.min, g.period
        self.phase = rng.random() * g.period * g.phase_spread

    def next(self, t: float) -> float:
        return self.lo + self.span * (((t + self.phase) % self.period) / self.period)


class _Daily:
    __slots__ = ("hours", "shift")

    def __init__(self, g: DailyGen) -> None:
        self.hours = [*g.hours, g.hours[0]]
        self.shift = g.utc_offset * 3600.0

    def next(self, t: float) -> float:
        h = ((t + self.shift) % 86400.0) / 3600.0
        i = int(h)
        a = self.hours[i]
        return a + (self.hours[i + 1] - a) * (h - i)


def _gps(lat: float, lon: float) -> str:
    return f"{lat:.6f},{lon:.6f}"


class _GpsWalk:
    __slots__ = ("lat", "lat0", "lon", "lon0", "r", "radius", "step")

    def __init__(self, g: GpsWalkGen, rng: random.Random) -> None:
        self.lat0, self.lon0 = g.lat, g.lon
        self.lat, self.lon = g.lat, g.lon
        self.step = g.step_m / _EARTH_M * (180.0 / math.pi)  # degrees of latitude
        self.radius = g.radius_m / _EARTH_M * (180.0 / math.pi)
        self.r = rng.random

    def next(self, t: float) -> str:
        r = self.r
        scale = 1.0 / max(0.01, math.cos(math.radians(self.lat)))
        lat = self.lat + (r() + r() - 1.0) * self.step
        lon = self.lon + (r() + r() - 1.0) * self.step * scale
        # Back toward the centre when a step would leave the circle.
        if math.hypot(lat - self.lat0, (lon - self.lon0) / scale) > self.radius:
            lat, lon = self.lat + (self.lat0 - self.lat) * 0.1, self.lon + (self.lon0 - self.lon) * 0.1
        self.lat, self.lon = lat, lon
        return _gps(lat, lon)


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_M * math.asin(min(1.0, math.sqrt(h)))


class _GpsRoute:
    __slots__ = ("cum", "length", "loop", "points", "speed", "start", "t0")

    def __init__(self, g: GpsRouteGen, rng: random.Random) -> None:
        self.points = [(float(a), float(b)) for a, b in g.waypoints]
        if g.loop:
            self.points.append(self.points[0])
        self.cum = [0.0]
        for a, b in itertools.pairwise(self.points):
            self.cum.append(self.cum[-1] + _distance_m(a, b))
        self.length = self.cum[-1]
        self.speed = g.speed_kmh / 3.6
        self.loop = g.loop
        self.start = rng.random() * self.length * g.spread
        self.t0: float | None = None

    def next(self, t: float) -> str:
        if self.t0 is None:
            self.t0 = t
        d = self.start + (t - self.t0) * self.speed
        if self.length <= 0:
            return _gps(*self.points[0])
        d = d % self.length if self.loop else min(d, self.length)
        i = min(len(self.cum) - 2, max(0, bisect.bisect_right(self.cum, d) - 1))
        seg = self.cum[i + 1] - self.cum[i]
        f = (d - self.cum[i]) / seg if seg > 0 else 0.0
        (la, lo), (lb, lob) = self.points[i], self.points[i + 1]
        return _gps(la + (lb - la) * f, lo + (lob - lo) * f)


class _Replay:
    __slots__ = ("i", "loop", "values")

    def __init__(self, g: ReplayGen) -> None:
        self.values, self.loop, self.i = g.values, g.loop, 0

    def next(self, t: float) -> Any:
        i = self.i
        if i >= len(self.values):
            if not self.loop:
                return MISSING
            i = 0
        self.i = i + 1
        return self.values[i]


def make_generator(g: GeneratorSpec, rng: random.Random) -> Any:
    """The runtime generator of a spec (an object with ``next(t)``), drawing from ``rng``."""
    if isinstance(g, ConstantGen):
        return _Constant(g.value)
    if isinstance(g, ChoiceGen):
        return _Choice(g, rng)
    if isinstance(g, UniformGen):
        return _Uniform(g, rng)
    if isinstance(g, NormalGen):
        return _Normal(g, rng)
    if isinstance(g, SineGen):
        return _Sine(g, rng)
    if isinstance(g, RandomWalkGen):
        return _Walk(g, rng)
    if isinstance(g, CounterGen):
        return _Counter(g)
    if isinstance(g, RampGen):
        return _Ramp(g, rng)
    if isinstance(g, DailyGen):
        return _Daily(g)
    if isinstance(g, GpsWalkGen):
        return _GpsWalk(g, rng)
    if isinstance(g, GpsRouteGen):
        return _GpsRoute(g, rng)
    return _Replay(g)


class _Shaped:
    """A number generator's value with noise, precision and a missing-value rate applied."""

    __slots__ = ("digits", "inner", "missing", "noise", "r", "scale")

    def __init__(self, inner: Any, a: AttributeSpec, rng: random.Random) -> None:
        self.inner, self.digits, self.noise, self.missing, self.r = inner, a.precision, a.noise, a.missing, rng.random
        self.scale = 10.0 ** (a.precision or 0)

    def next(self, t: float) -> Any:
        r = self.r
        if self.missing and r() < self.missing:
            return MISSING
        v = self.inner.next(t)
        if v is MISSING:
            return v
        if self.noise:
            v += (2.0 * r() - 1.0) * self.noise
        if self.digits is not None:
            v = _floor(v * self.scale + 0.5) / self.scale if self.digits else _floor(v + 0.5)
        return v


def shape(gen: Any, a: AttributeSpec, rng: random.Random) -> tuple[Callable[[float], Any], float]:
    """The attribute's value function, and the scale (``10 ** precision``) the model rounds it by (0: as it comes).

    Rounding alone is done by the model itself, not by a wrapper: one call less per attribute and state.
    """
    if not a.noise and not a.missing:
        if a.precision is None or a.type != "number":
            return gen.next, 0.0
        if a.precision > 0 and not isinstance(gen, _Replay):
            return gen.next, 10.0 ** a.precision
    return _Shaped(gen, a, rng).next, 0.0


def set_parameter(gen: Any, parameter: str, value: float) -> None:
    """Change a live generator's parameter (a setpoint command): the values after it follow the new one."""
    if isinstance(gen, (_Constant,)) and parameter == "value":
        gen.value = value
    elif isinstance(gen, (_Uniform, _Ramp)) and parameter in ("min", "max"):
        hi = gen.lo + gen.span
        lo = value if parameter == "min" else gen.lo
        hi = value if parameter == "max" else hi
        gen.lo, gen.span = lo, max(0.0, hi - lo)
    elif isinstance(gen, _Normal) and parameter in ("mean", "std"):
        setattr(gen, parameter, value if parameter == "mean" else max(0.0, value))
    elif isinstance(gen, _Sine) and parameter in ("offset", "amplitude"):
        if parameter == "offset":
            gen.offset = value
        else:
            gen.amp = value
    elif isinstance(gen, _Walk) and parameter in ("value", "min", "max", "drift"):
        if parameter == "value":
            gen.set(value)
        elif parameter == "min":
            gen.lo = value
        elif parameter == "max":
            gen.hi = value
        else:
            gen.drift = value
    elif isinstance(gen, _Counter) and parameter in ("value", "step"):
        if parameter == "value":
            gen.value = value - gen.step
        else:
            gen.step = value
    else:
        raise ValueError(f"a {type(gen).__name__.strip('_').lower()} generator has no parameter {parameter!r}")
