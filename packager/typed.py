"""Options as data: turn a YAML/JSON mapping into a frozen dataclass, collecting EVERY problem.

Used for profiles, backend options and pass options alike. A dataclass field declares what it takes
by its type (int, float, bool, str, list[str], Optional[...], a Literal of choices, a nested
dataclass, or dict[str, dataclass]) and, in `field(metadata=...)`, optional bounds:
`{"min": 0, "max": 23}`. An unknown key gets a "did you mean"; a wrong type says expected vs got.

    obj = build(Probe, {"runs": "many"}, where="p.yaml", issues=issues, prefix="probe.")
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

_MISSING = object()


@dataclass(frozen=True)
class Issue:
    """One problem in an options file: where, which key, what was expected, what was found."""

    where: str
    key: str
    expected: str
    got: str
    hint: str = ""

    def text(self) -> str:
        if self.expected == UNKNOWN:
            return f"unknown key '{self.key}'"
        return f"'{self.key}' {self.expected}" + (f", got {self.got}" if self.got else "")

    def line(self) -> str:
        return f"{self.where}: {self.text()}" + (f" ({self.hint})" if self.hint else "")


UNKNOWN = "is not a known key"


def describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def type_name(tp) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {type_name(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _check(tp, value, where: str, key: str, issues: list[Issue], meta: dict):
    """The value converted to tp, or _MISSING after recording an issue."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _check(inner[0], value, where, key, issues, meta)
        for a in inner:  # first type that takes the value without issues
            trial: list[Issue] = []
            out = _check(a, value, where, key, trial, meta)
            if not trial:
                return out
        issues.append(Issue(where, key, f"must be {type_name(tp)}", describe(value)))
        return _MISSING
    if origin is Literal:
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        issues.append(Issue(where, key, f"must be {type_name(tp)}", describe(value),
                            f"did you mean '{close[0]}'?" if close else ""))
        return _MISSING
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            issues.append(Issue(where, key, "must be a mapping", describe(value),
                                f"write '{key}:' followed by indented keys"))
            return _MISSING
        return build(tp, value, where, issues, prefix=key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            issues.append(Issue(where, key, f"must be {type_name(tp)}", describe(value)))
            return _MISSING
        item = args[0] if args else Any
        out = []
        for i, v in enumerate(value):
            got = _check(item, v, where, f"{key}[{i}]", issues, {}) if item is not Any else v
            if got is not _MISSING:
                out.append(got)
        return tuple(out)
    if origin is dict:
        if not isinstance(value, dict):
            issues.append(Issue(where, key, "must be a mapping", describe(value)))
            return _MISSING
        vt = args[1] if len(args) == 2 else Any
        out = {}
        for k, v in value.items():
            got = _check(vt, v, where, f"{key}.{k}", issues, {}) if vt is not Any else v
            if got is not _MISSING:
                out[str(k)] = got
        return out
    if tp is Any:
        return value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    if not ok:
        issues.append(Issue(where, key, f"must be {type_name(tp)}", describe(value), f"set '{key}' to {type_name(tp)}"))
        return _MISSING
    lo, hi, gt = meta.get("min"), meta.get("max"), meta.get("gt")
    if isinstance(value, (int, float)) and ((lo is not None and value < lo) or (hi is not None and value > hi)
                                            or (gt is not None and value <= gt)):
        rng = (f"> {gt}" if gt is not None else f"{lo}..{hi}" if lo is not None and hi is not None
               else f">= {lo}" if lo is not None else f"<= {hi}")
        issues.append(Issue(where, key, f"must be {rng}", describe(value), meta.get("hint", "")))
        return _MISSING
    return value


def build(cls, data: dict, where: str, issues: list[Issue], prefix: str = "", partial: bool = False):
    """cls(**data) with every value checked; problems are appended to `issues`.

    partial=True checks only the keys present (one file of an `extends` chain) and returns None.
    """
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else "known keys here: " + ", ".join(sorted(fields))
            issues.append(Issue(where, dotted, UNKNOWN, "", hint))
            continue
        tp = hints[key]
        if partial and dataclasses.is_dataclass(tp) and isinstance(value, dict):
            build(tp, value, where, issues, prefix=dotted + ".", partial=True)
            continue
        got = _check(tp, value, where, dotted, issues, dict(fields[key].metadata))
        if got is not _MISSING:
            kwargs[key] = got
    if partial:
        return None
    for name, f in fields.items():
        if name in kwargs:
            continue
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            issues.append(Issue(where, f"{prefix}{name}", "is missing", "",
                                "add it, or 'extends: base' to inherit the defaults"))
    if any(i.where == where and i.key.startswith(prefix) for i in issues):
        try:
            return cls(**kwargs)
        except TypeError:
            return None
    return cls(**kwargs)


def to_dict(obj) -> Any:
    """A dataclass (nested, tuples as lists) back to plain data for YAML / JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
