"""Device profiles: YAML files that decide format, precision, runtime settings, tolerances
and latency budgets. Validated on load; `extends:` inherits from another profile (deep merge).

A profile argument is a shipped name (profiles/*.yaml) or a path to the user's own YAML file.
"""
from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ProfileError

# profiles/ sits beside packager/ both in the repository and in site-packages.
PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"

FORMATS = ("onnx", "tflite", "torchscript")
PRECISIONS = ("fp32", "fp16", "int8")
QUANT_MODES = ("auto", "dynamic", "static")
GRAPH_OPT = ("disable", "basic", "extended", "all")
METRICS = ("mean", "p50", "p90", "p95", "p99", "max")
RUNTIME_FOR_FORMAT = {"onnx": "onnxruntime", "tflite": "litert", "torchscript": "torch"}

_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_THRESH = {"atol": _OPT_NUM, "rtol": _OPT_NUM, "cosine_min": _OPT_NUM, "top1_min": _OPT_NUM}

# key -> type(s) or nested spec (dict). A None in the tuple allows null.
SCHEMA: dict[str, Any] = {
    "name": str,
    "description": str,
    "extends": str,
    "format": str,
    "precision": str,
    "opset": int,
    "dynamic_batch": bool,
    "layout": str,
    "runtime": {
        "providers": list,
        "threads": int,
        "graph_optimization": str,
        "delegates": list,
    },
    "quantization": {
        "mode": str,
        "per_channel": bool,
        "calibration_method": str,
        "calibration_samples": int,
        "reduce_range": bool,
        "io_dtype": str,
        "edgetpu_compile": bool,
    },
    "parity": {
        "samples": int,
        "fp32": _THRESH,
        "fp16": _THRESH,
        "int8": _THRESH,
    },
    "probe": {
        "warmup_runs": int,
        "warmup_seconds": _NUM,
        "runs": int,
        "seconds": _NUM,
        "max_seconds": _NUM,
        "budget_ms": _OPT_NUM,
        "budget_metric": str,
    },
    "torchscript": {
        "mode": str,               # auto | trace | script (packager/convert/torchscript.py)
    },
    "device": {
        "arch": list,
        "min_python": str,
        "notes": str,
    },
}

CHOICES = {
    ("format",): FORMATS,
    ("precision",): PRECISIONS,
    ("quantization", "mode"): QUANT_MODES,
    ("quantization", "calibration_method"): ("minmax", "entropy", "percentile"),
    ("quantization", "io_dtype"): ("float32", "int8", "uint8"),
    ("runtime", "graph_optimization"): GRAPH_OPT,
    ("probe", "budget_metric"): METRICS,
    ("layout",): ("NCHW", "NHWC", "auto"),
    ("torchscript", "mode"): ("auto", "trace", "script"),
}


@dataclass
class Profile:
    """A resolved profile (after `extends`). `data` is the validated, merged mapping."""

    name: str
    source: str
    data: dict

    def __getitem__(self, key):
        return self.data[key]

    @property
    def description(self) -> str:
        return self.data.get("description", "")

    def to_dict(self) -> dict:
        return copy.deepcopy(self.data)

    @property
    def format(self) -> str:
        return self.data["format"]

    @property
    def precision(self) -> str:
        return self.data["precision"]

    @property
    def runtime(self) -> str:
        return RUNTIME_FOR_FORMAT[self.format]

    def thresholds(self, precision: str | None = None) -> dict:
        return dict(self.data["parity"][precision or self.precision])

    def with_overrides(self, fmt: str | None = None, precision: str | None = None) -> "Profile":
        data = copy.deepcopy(self.data)
        where = f"--format/--precision for profile '{self.name}'"
        if fmt is not None:
            data["format"] = fmt
        if precision is not None:
            prec, mode = parse_precision(precision)
            data["precision"] = prec
            if mode:
                data["quantization"]["mode"] = mode
        _check_choices(data, where)
        return Profile(self.name, self.source, data)


def parse_precision(text: str) -> tuple[str, str | None]:
    """'int8-static' -> ('int8', 'static'); 'fp16' -> ('fp16', None)."""
    text = text.strip().lower()
    if text.startswith("int8-"):
        mode = text[5:]
        if mode not in ("dynamic", "static"):
            raise ProfileError(f"unknown precision '{text}'",
                               "use one of fp32, fp16, int8, int8-dynamic, int8-static")
        return "int8", mode
    if text not in PRECISIONS:
        raise ProfileError(f"unknown precision '{text}'",
                           "use one of fp32, fp16, int8, int8-dynamic, int8-static")
    return text, None


def shipped_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml") if not p.stem.startswith("_"))


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read profile file {path}: {exc.strerror}",
                           "check the path and permissions") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ProfileError(f"profile file {path} is not valid YAML{where}: {problem}",
                           "fix the YAML syntax") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(f"profile file {path} must hold a mapping of keys, got {type(data).__name__}",
                           "write the profile as `key: value` lines")
    return data


def _locate(ref: str, relative_to: Path | None = None) -> Path:
    looks_like_path = ref.endswith((".yaml", ".yml")) or "/" in ref or "\\" in ref
    if looks_like_path:
        path = Path(ref)
        if not path.is_absolute() and relative_to is not None and not path.exists():
            path = relative_to / path
        if not path.is_file():
            raise ProfileError(f"profile file '{ref}' does not exist",
                               "pass a shipped profile name (edgepack profiles list) or a YAML path")
        return path
    path = PROFILES_DIR / f"{ref}.yaml"
    if not path.is_file():
        names = shipped_names()
        close = difflib.get_close_matches(ref, names, n=1)
        hint = (f"did you mean '{close[0]}'? " if close else "") + "known: " + ", ".join(names)
        raise ProfileError(f"unknown profile '{ref}'", hint)
    return path


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _validate(data: dict, spec: dict, where: str, prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in spec:
            close = difflib.get_close_matches(str(key), list(spec), n=1)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else \
                "known keys here: " + ", ".join(sorted(spec))
            raise ProfileError(f"{where}: unknown key '{dotted}'", hint)
        expected = spec[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise ProfileError(f"{where}: '{dotted}' must be a mapping, got {_tname(value)}",
                                   f"write '{dotted}:' followed by indented keys")
            _validate(value, expected, where, dotted + ".")
            continue
        types = expected if isinstance(expected, tuple) else (expected,)
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ProfileError(f"{where}: '{dotted}' must be {names}, got {_tname(value)} {value!r}",
                               f"set '{dotted}' to a {names}")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise ProfileError(f"{where}: '{dotted}' must be a list of strings", f"quote each item of '{dotted}'")


def _tname(value) -> str:
    return "null" if value is None else type(value).__name__


def _get(data: dict, path: tuple):
    for p in path:
        if not isinstance(data, dict) or p not in data:
            return None
        data = data[p]
    return data


def _check_choices(data: dict, where: str) -> None:
    for path, choices in CHOICES.items():
        value = _get(data, path)
        if value is not None and value not in choices:
            raise ProfileError(f"{where}: '{'.'.join(path)}' is '{value}', not one of {', '.join(choices)}",
                               f"set '{'.'.join(path)}' to one of {', '.join(choices)}")
    for key in ("opset",):
        if key in data and not 7 <= data[key] <= 23:
            raise ProfileError(f"{where}: 'opset' {data[key]} is outside 7..23", "use an opset such as 17")
    probe = data.get("probe", {})
    for key in ("warmup_runs", "runs"):
        if key in probe and probe[key] < 0:
            raise ProfileError(f"{where}: 'probe.{key}' must be >= 0, got {probe[key]}", f"set probe.{key} to 0 or more")
    if probe.get("budget_ms") is not None and probe["budget_ms"] <= 0:
        raise ProfileError(f"{where}: 'probe.budget_ms' must be > 0 or null", "set a positive budget, or null for none")
    threads = _get(data, ("runtime", "threads"))
    if threads is not None and threads < 0:
        raise ProfileError(f"{where}: 'runtime.threads' must be >= 0 (0 = runtime default)", "set runtime.threads to 0 or more")
    samples = _get(data, ("parity", "samples"))
    if samples is not None and not 1 <= samples <= 1000:
        raise ProfileError(f"{where}: 'parity.samples' must be 1..1000, got {samples}", "use e.g. 8")


REQUIRED = ("format", "precision", "runtime", "quantization", "parity", "probe", "device")


def _load_raw(path: Path, chain: tuple) -> dict:
    key = str(path.resolve())
    if key in chain:
        cycle = " -> ".join(Path(c).stem for c in chain + (key,))
        raise ProfileError(f"profile 'extends' cycle: {cycle}", "remove one of the 'extends' links")
    data = _read_yaml(path)
    _validate(data, SCHEMA, str(path))
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data
    parent = _load_raw(_locate(parent_ref, path.parent), chain + (key,))
    parent.pop("name", None)
    parent.pop("description", None)
    return _merge(parent, data)


def load(ref: str) -> Profile:
    """Load and resolve a profile by shipped name or file path."""
    path = _locate(ref)
    data = _load_raw(path, ())
    where = str(path)
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ProfileError(f"{where}: missing {', '.join(missing)}",
                           "add them, or 'extends: base' to inherit defaults")
    _check_choices(data, where)
    name = data.get("name") or path.stem
    data["name"] = name
    data.setdefault("description", "")
    return Profile(name=name, source=where, data=data)


def list_profiles() -> list[Profile]:
    return [load(n) for n in shipped_names()]
