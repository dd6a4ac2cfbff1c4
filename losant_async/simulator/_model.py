"""A device's state values per call: its generators, run through one function generated for its device type.

Every state of the fleet goes through :meth:`DeviceModel.next`. Calling each
attribute's generator cost a Python call, a bound method and a tuple per
attribute, and at 10,000 devices every object a state reads is a cache miss:
a 10-attribute state took about 6 us of the simulator's CPU more than a
3-attribute one. So for each device type one function is generated (once) that
computes every attribute inline, with the type's constants (steps, bounds,
periods) written into it and the device's own state (a walk's value, a sine's
phase) read from its generator objects. It makes the same draws in the same
order as the generators' own ``next``, so the values are the same to the bit
(a test holds both paths to that). A device whose generator a command or a
fault changed (:meth:`DeviceModel.set_parameter`) goes on through its
generators' ``next``; so does a type whose attributes can be left out.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Mapping
from typing import Any

from ._generators import (
    _TAU,
    MISSING,
    _Choice,
    _Constant,
    _Counter,
    _Normal,
    _Ramp,
    _Sine,
    _Uniform,
    _Walk,
    make_generator,
    set_parameter,
    shape,
)
from ._scenario import AttributeSpec, ReplayGen

__all__ = ["DeviceModel"]

_floor = math.floor

Compiled = Callable[[float, list[Any]], dict[str, Any]]

_COMPILED: dict[int, tuple[Mapping[str, AttributeSpec], Compiled | None]] = {}
"""Per attributes mapping (by id, the mapping kept alive so the id stays its own): its function, or None."""
_MAX_COMPILED = 256


class DeviceModel:
    """One device's attributes: ``next(t)`` is its next state's data; ``generators`` its live generators by name."""

    __slots__ = ("_fast", "_fns", "_gaps", "_state", "bias", "generators", "overrides")

    def __init__(self, attributes: Mapping[str, AttributeSpec], seed: int) -> None:
        rng = random.Random(seed)
        self.generators: dict[str, Any] = {}
        fns: list[tuple[str, Callable[[float], Any], float]] = []
        state: list[Any] = []
        for name, a in attributes.items():
            gen = make_generator(a.generator, rng)
            self.generators[name] = gen
            fn, scale = shape(gen, a, rng)
            fns.append((name, fn, scale))
            # The generated code reads an inlined generator's own state, and calls any other source.
            raw = getattr(fn, "__self__", None) is gen
            state.append(gen if raw and type(gen) in _INLINE else fn)
        state.append(rng.random)
        self._fns = fns
        self._state = state
        # Whether some attribute can be left out (a missing rate, a replay that stops): only then
        # does each value need the check.
        self._gaps = any(a.missing or (isinstance(a.generator, ReplayGen) and not a.generator.loop)
                         for a in attributes.values())
        self._fast: Compiled | None = None
        if not self._gaps:
            self._fast = _compiled(attributes, self.generators, state, [s for _, _, s in fns])
        self.overrides: dict[str, Any] = {}
        """Values a command set: reported instead of the generator's until changed again."""
        self.bias: dict[str, float] = {}
        """Amounts added to numbers while an anomaly lasts."""

    def set_parameter(self, attribute: str, parameter: str, value: float) -> None:
        """Change a live generator's parameter (a setpoint): this device's values follow it from its next state."""
        set_parameter(self.generators[attribute], parameter, value)
        self._fast = None  # the generated code has the type's parameters written in

    def next(self, t: float) -> dict[str, Any]:
        """The data of the state at ``t`` (epoch seconds): every attribute not missing this time."""
        fast = self._fast
        if fast is not None:
            out = fast(t, self._state)
        # floor(v * 100 + 0.5) / 100 rather than round(v, 2): a third of the cost (round() goes through
        # a decimal conversion), and an integer over a power of ten prints as the short decimal.
        elif self._gaps:
            out = {name: _floor(v * s + 0.5) / s if s else v
                   for name, fn, s in self._fns if (v := fn(t)) is not MISSING}
        else:
            out = {name: _floor(fn(t) * s + 0.5) / s if s else fn(t) for name, fn, s in self._fns}
        if self.overrides:
            out.update(self.overrides)
        if self.bias:
            scales = {name: s for name, _, s in self._fns}
            for name, delta in self.bias.items():
                if name in out:
                    v, s = out[name] + delta, scales[name]
                    out[name] = _floor(v * s + 0.5) / s if s else v
        return out


def _compiled(attributes: Mapping[str, AttributeSpec], generators: Mapping[str, Any],
              state: list[Any], scales: list[float]) -> Compiled | None:
    """The type's generated function (made from this device's generators the first time), or None."""
    key = id(attributes)
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] is attributes:
        return hit[1]
    fn = _generate(attributes, generators, state, scales)
    if len(_COMPILED) < _MAX_COMPILED:
        _COMPILED[key] = (attributes, fn)
    return fn


def _lit(x: Any) -> str | None:
    """``x`` as a Python literal that reads back to the same value, or None (not a finite float or an int)."""
    if type(x) is float and math.isfinite(x):
        return repr(x)
    if type(x) is int:
        return repr(x)
    return None


_Lines = list[str]


def _walk(g: _Walk, k: int, out: _Lines) -> bool:
    step, drift = _lit(g.step), _lit(g.drift)
    if step is None or drift is None:
        return False
    out.append(f"    v = g{k}.value + (r() + r() - 1.0) * {step} + {drift}")
    hi, lo = _lit(g.hi), _lit(g.lo)
    if hi is not None and lo is not None:
        out += [f"    if v > {hi}:", f"        v = {hi}", f"    elif v < {lo}:", f"        v = {lo}"]
    elif hi is not None:
        out += [f"    if v > {hi}:", f"        v = {hi}"]
    elif lo is not None:
        out += [f"    if v < {lo}:", f"        v = {lo}"]
    out.append(f"    g{k}.value = v")
    return True


def _normal(g: _Normal, k: int, out: _Lines) -> bool:
    mean, std = _lit(g.mean), _lit(g.std)
    if mean is None or std is None:
        return False
    out += [f"    z = g{k}.spare", "    if z is None:", "        mag = _sqrt(-2.0 * _log(1.0 - r()))",
            f"        angle = {_TAU!r} * r()", "        z = mag * _cos(angle)", f"        g{k}.spare = mag * _sin(angle)",
            "    else:", f"        g{k}.spare = None", f"    v = {mean} + {std} * z"]
    hi, lo = _lit(g.hi), _lit(g.lo)
    if hi is not None:
        out += [f"    if v > {hi}:", f"        v = {hi}"]
    if lo is not None:
        out += [f"    if v < {lo}:", f"        v = {lo}"]
    return True


def _counter(g: _Counter, k: int, out: _Lines) -> bool:
    step, start = _lit(g.step), _lit(g.start)
    if step is None or start is None:
        return False
    out.append(f"    v = g{k}.value + {step}")
    if g.wrap is not None:
        wrap = _lit(g.wrap)
        if wrap is None:
            return False
        out += [f"    if v {'>=' if g.step > 0 else '<='} {wrap}:", f"        v = {start}"]
    out.append(f"    g{k}.value = v")
    return True


def _expression(g: Any, k: int, out: _Lines, names: dict[str, Any]) -> str | None:
    """Lines computing attribute ``k`` into ``v`` (appended to ``out``), or its expression; None: not inlined."""
    if isinstance(g, _Walk):
        return "v" if _walk(g, k, out) else None
    if isinstance(g, _Normal):
        return "v" if _normal(g, k, out) else None
    if isinstance(g, _Counter):
        return "v" if _counter(g, k, out) else None
    if isinstance(g, _Uniform):
        lo, span = _lit(g.lo), _lit(g.span)
        return None if lo is None or span is None else f"{lo} + {span} * r()"
    if isinstance(g, _Sine):
        parts = [_lit(x) for x in (g.offset, g.amp, g.w, g.period)]
        if None in parts:
            return None
        offset, amp, w, period = parts
        return f"{offset} + {amp} * _sin({w} * (t % {period}) + g{k}.phase)"
    if isinstance(g, _Ramp):
        parts = [_lit(x) for x in (g.lo, g.span, g.period)]
        if None in parts:
            return None
        lo, span, period = parts
        return f"{lo} + {span} * (((t + g{k}.phase) % {period}) / {period})"
    if isinstance(g, _Choice):
        total = _lit(g.total)
        if total is None:
            return None
        names[f"V{k}"], names[f"C{k}"] = tuple(g.values), tuple(g.cum)
        return f"V{k}[_bisect(C{k}, r() * {total})]"
    if isinstance(g, _Constant):
        names[f"K{k}"] = g.value
        return f"K{k}"
    return None


_INLINE = (_Walk, _Normal, _Counter, _Uniform, _Sine, _Ramp, _Choice, _Constant)


def _generate(attributes: Mapping[str, AttributeSpec], generators: Mapping[str, Any],
              state: list[Any], scales: list[float]) -> Compiled | None:
    """Generate the type's function: ``f(t, state)`` -> the state's data, as the generators' ``next`` would."""
    names: dict[str, Any] = {"_sin": math.sin, "_cos": math.cos, "_sqrt": math.sqrt, "_log": math.log,
                             "_floor": _floor, "_bisect": bisect.bisect_right}
    count = len(attributes)
    body: _Lines = ["def generated(t, s):", f"    {', '.join(f'g{k}' for k in range(count))}, r = s"]
    values: list[str] = []
    for k, name in enumerate(attributes):
        gen = generators[name]
        expr = _expression(gen, k, body, names) if state[k] is gen else None
        scale = scales[k]
        if expr is None:
            expr = f"g{k}(t)"  # a source called as it comes (state[k] is its next)
            if state[k] is gen:
                return None  # an inlinable kind whose parameters cannot be written in: use the generators
        if scale:
            s = _lit(scale)
            if s is None:
                return None
            expr = f"_floor(({expr}) * {s} + 0.5) / {s}"
        body.append(f"    x{k} = {expr}")
        values.append(f"{name!r}: x{k}")
    body.append(f"    return {{{', '.join(values)}}}")
    # Our own code: its literals are reprs of finite numbers, attribute names are validated and quoted.
    exec("\n".join(body), names)
    fn: Compiled = names["generated"]
    return fn
