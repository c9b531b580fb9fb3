"""Device profiles: YAML files that decide format, precision, runtime settings, tolerances and
latency budgets, loaded into a typed, frozen `Profile`. `extends:` inherits from another profile
(deep merge). Every problem in a file is reported at once (file, key, expected, got).

A profile argument is a shipped name (profiles/*.yaml) or a path to the user's own YAML file.
The formats, their runtimes and their own sections (`torchscript:`, `onnx:` ...) come from the
backend registry (packager/formats); the graph passes' options (`passes:`) from packager/passes.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from . import typed
from .errors import ProfileError

log = logging.getLogger(__name__)

# profiles/ sits beside packager/ both in the repository and in site-packages.
PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"

PRECISIONS = ("fp32", "fp16", "int8")
METRICS = ("mean", "p50", "p90", "p95", "p99", "max")

# Keys that moved into a format's own section; old profiles still load (with a note in the log).
MOVED = {("opset",): ("onnx", "opset"), ("dynamic_batch",): ("onnx", "dynamic_batch"),
         ("quantization", "io_dtype"): ("tflite", "io_dtype"),
         ("quantization", "edgetpu_compile"): ("tflite", "edgetpu_compile")}


@dataclass(frozen=True)
class Runtime:
    providers: tuple[str, ...] = ("CPUExecutionProvider",)   # ORT providers / torch or OpenVINO devices, in order
    threads: int = field(default=0, metadata={"min": 0, "hint": "0 = the runtime's default"})
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    delegates: tuple[str, ...] = ()                           # LiteRT delegates, in order
    # Execution providers / delegates / devices a device MUST offer: `push` refuses a device
    # whose runtime lacks one, before the model is sent (packager/compat.py).
    require_providers: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return typed.to_dict(self)


@dataclass(frozen=True)
class Quantization:
    """int8 (and the float-fallback recovery); docs/QUANTIZATION.md."""

    mode: Literal["auto", "dynamic", "static"] = "auto"
    per_channel: bool = True
    calibration_method: Literal["auto", "minmax", "entropy", "percentile"] = "auto"
    calibration_samples: int = field(default=32, metadata={"min": 1})
    reduce_range: Union[Literal["auto"], bool] = "auto"   # auto: on x86 build hosts without VNNI
    activation_type: Literal["auto", "int8", "uint8"] = "auto"   # auto: uint8 for x86 targets (U8S8 kernels)
    op_types: Union[Literal["auto"], tuple[str, ...]] = "auto"   # auto: every op, then Conv/MatMul/Gemm only
    max_fallbacks: int = field(default=16, metadata={"min": 0, "hint": "0 = never leave a node in float"})
    # ops at the END of the graph that may stay float when nothing else recovers parity: an Edge TPU
    # runs every op after its first unsupported one on the CPU, so a float tail costs CPU time only
    tail_fallbacks: int = field(default=0, metadata={"min": 0, "hint": "0 = no float tail"})
    # what computes the first diverging tensor (a signal front end: STFT, CQT, log-mel) left in float,
    # tried after the fallbacks when max_fallbacks > 0; an Edge TPU would run all of a float head on the CPU
    float_head: bool = True
    max_attempts: int = field(default=10, metadata={"min": 1})
    search_seconds: float = field(default=900.0, metadata={"gt": 0})


_COS = {"min": -1.0, "max": 1.0, "hint": "a cosine similarity: at most 1.0 (null = not checked)"}
_TOL = {"min": 0.0, "hint": "a tolerance >= 0 (null = not checked)"}
_SHARE = {"min": 0.0, "max": 1.0, "hint": "a share of positions, 0..1 (null = not checked)"}


@dataclass(frozen=True)
class Thresholds:
    """What parity demands at one precision (agent/parity.py applies them, on the host and the device)."""

    atol: Optional[float] = field(default=None, metadata=_TOL)
    rtol: Optional[float] = field(default=None, metadata=_TOL)
    outside_share_max: Optional[float] = field(default=None, metadata=_SHARE)  # share of elements atol/rtol may miss
    cosine_min: Optional[float] = field(default=None, metadata=_COS)          # whole output, all samples
    sample_cosine_min: Optional[float] = field(default=None, metadata=_COS)   # the worst single sample
    slice_cosine_min: Optional[float] = field(default=None, metadata=_COS)    # the worst channel-axis slice
    slice_atol: Optional[float] = field(default=None, metadata=_TOL)          # a slice this close passes anyway
    top1_min: Optional[float] = field(default=None, metadata=_SHARE)          # classifier outputs only

    def to_dict(self) -> dict:
        return typed.to_dict(self)


@dataclass(frozen=True)
class Parity:
    samples: int = field(default=8, metadata={"min": 1, "max": 1000})
    fp32: Thresholds = Thresholds()
    fp16: Thresholds = Thresholds()
    int8: Thresholds = Thresholds()
    # outputs judged by top-1 agreement: auto = those a Softmax/LogSoftmax produces; or a list of names
    classifier_outputs: Union[Literal["auto"], tuple[str, ...]] = "auto"
    slice_axis: Optional[int] = None   # the channel axis of per-slice parity (default 1 for rank >= 3)


@dataclass(frozen=True)
class Probe:
    warmup_runs: int = field(default=10, metadata={"min": 0})
    warmup_seconds: float = field(default=0.2, metadata={"min": 0})
    runs: int = field(default=100, metadata={"min": 0})
    seconds: float = field(default=1.0, metadata={"min": 0})
    max_seconds: float = field(default=30.0, metadata={"min": 0})
    budget_ms: Optional[float] = field(default=None, metadata={"gt": 0, "hint": "set a positive budget, or null for none"})
    budget_metric: Literal["mean", "p50", "p90", "p95", "p99", "max"] = "p90"

    def to_dict(self) -> dict:
        return typed.to_dict(self)


@dataclass(frozen=True)
class Device:
    arch: tuple[str, ...] = ()
    min_python: str = "3.8"
    notes: str = ""

    def to_dict(self) -> dict:
        return typed.to_dict(self)


@dataclass(frozen=True)
class Profile:
    """A resolved profile (after `extends`), validated and typed."""

    name: str
    format: str
    precision: Literal["fp32", "fp16", "int8"]
    runtime: Runtime
    quantization: Quantization
    parity: Parity
    probe: Probe
    device: Device
    description: str = ""
    layout: Literal["NCHW", "NHWC", "auto"] = "auto"
    formats: dict = field(default_factory=dict)   # format name -> its typed options (registry)
    passes: dict = field(default_factory=dict)    # pass name -> its typed options (packager/passes)
    source: str = ""                              # the file it came from

    @property
    def runtime_name(self) -> str:
        from . import formats

        return formats.get(self.format).runtime

    def format_options(self, fmt) -> Any:
        return self.formats[getattr(fmt, "value", fmt)]

    def thresholds(self, precision: str | None = None) -> dict:
        return getattr(self.parity, precision or self.precision).to_dict()

    def pass_options(self, name: str):
        return self.passes[name]

    def with_overrides(self, fmt: str | None = None, precision: str | None = None,
                       torchscript_mode: str | None = None) -> "Profile":
        """The profile with --format / --precision / --torchscript-mode applied (validated alike)."""
        data = self.to_dict()
        if fmt is not None:
            data["format"] = fmt
        if precision is not None:
            prec, mode = parse_precision(precision)
            data["precision"] = prec
            if mode:
                data["quantization"]["mode"] = mode
        if torchscript_mode is not None:
            data.setdefault("torchscript", {})["mode"] = torchscript_mode
        return _typed(data, f"--format/--precision/--torchscript-mode for profile '{self.name}'", self.source)

    def with_patch(self, patch: dict, where: str = "") -> "Profile":
        """The profile with `patch` deep-merged into it (validated like a file): how `edgepack tune`
        describes a candidate."""
        return _typed(_merge(self.to_dict(), patch), where or f"a patch of profile '{self.name}'", self.source)

    def to_dict(self) -> dict:
        """Plain data, the shape of the YAML (what the manifest records as the resolved profile)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("formats", "passes", "source"):
                continue
            out[f.name] = typed.to_dict(getattr(self, f.name))
        for name, opts in self.formats.items():
            out[name] = typed.to_dict(opts)
        out["passes"] = {name: typed.to_dict(o) for name, o in self.passes.items()}
        return out


def parse_precision(text: str) -> tuple[str, str | None]:
    """'int8-static' -> ('int8', 'static'); 'fp16' -> ('fp16', None)."""
    text = text.strip().lower()
    fix = "use one of fp32, fp16, int8, int8-dynamic, int8-static"
    if text.startswith("int8-"):
        mode = text[5:]
        if mode not in ("dynamic", "static"):
            raise ProfileError(f"unknown precision '{text}'", fix)
        return "int8", mode
    if text not in PRECISIONS:
        raise ProfileError(f"unknown precision '{text}'", fix)
    return text, None


# ----------------------------------------------------------------------------- schema from the registries

def _sections() -> tuple[dict, dict]:
    """{format name: options dataclass}, {pass name: options dataclass}."""
    from . import formats, passes

    fmts = {b.format.value: b.options for b in formats.all_backends() if b.options is not None}
    return fmts, {p.name: p.Options for p in passes.all_passes()}


_CORE = {f.name for f in dataclasses.fields(Profile)} - {"formats", "passes", "source"}


def _check(data: dict, where: str, issues: list, partial: bool) -> Profile | None:
    """Validate one mapping (a single file when partial) into a Profile, appending issues."""
    fmts, pass_opts = _sections()
    core = {k: v for k, v in data.items() if k in _CORE}
    extra = {k: v for k, v in data.items() if k not in _CORE and k not in ("extends", "passes")}
    for key, value in extra.items():
        if key not in fmts:
            close = difflib.get_close_matches(str(key), sorted(_CORE | set(fmts) | {"extends", "passes"}), n=1)
            issues.append(typed.Issue(where, key, typed.UNKNOWN, "",
                                      f"did you mean '{close[0]}'?" if close else
                                      "known keys: " + ", ".join(sorted(_CORE | set(fmts) | {"extends", "passes"}))))
    passes_data = data.get("passes") or {}
    if not isinstance(passes_data, dict):
        issues.append(typed.Issue(where, "passes", "must be a mapping", typed.describe(passes_data)))
        passes_data = {}
    if "format" in core and core["format"] not in fmts and isinstance(core["format"], str):
        close = difflib.get_close_matches(core["format"], sorted(fmts), n=1)
        issues.append(typed.Issue(where, "format", f"must be one of {', '.join(sorted(fmts))}",
                                  typed.describe(core["format"]), f"did you mean '{close[0]}'?" if close else ""))
        core.pop("format")
    if partial:
        typed.build(Profile, core, where, issues, partial=True)
        for key, value in extra.items():
            if key in fmts:
                typed.build(fmts[key], value or {}, where, issues, prefix=key + ".", partial=True) \
                    if isinstance(value, dict) else issues.append(typed.Issue(where, key, "must be a mapping",
                                                                              typed.describe(value)))
        for name, value in passes_data.items():
            _pass_options(name, value, pass_opts, where, issues, partial=True)
        return None
    options = {}
    for name, cls in fmts.items():
        value = extra.get(name) or {}
        options[name] = typed.build(cls, value, where, issues, prefix=name + ".") if isinstance(value, dict) else None
    chosen = {name: _pass_options(name, passes_data.get(name) or {}, pass_opts, where, issues)
              for name in pass_opts}
    for name in passes_data:
        if name not in pass_opts:
            _pass_options(name, passes_data[name], pass_opts, where, issues)
    prof = typed.build(Profile, core, where, issues)
    if prof is None or issues:
        return None
    return dataclasses.replace(prof, formats=options, passes=chosen, source=where)


def _pass_options(name, value, pass_opts, where, issues, partial=False):
    if name not in pass_opts:
        close = difflib.get_close_matches(str(name), sorted(pass_opts), n=1)
        issues.append(typed.Issue(where, f"passes.{name}", typed.UNKNOWN, "",
                                  f"did you mean '{close[0]}'?" if close else "known: " + ", ".join(sorted(pass_opts))))
        return None
    if not isinstance(value, dict):
        issues.append(typed.Issue(where, f"passes.{name}", "must be a mapping", typed.describe(value)))
        return None
    return typed.build(pass_opts[name], value, where, issues, prefix=f"passes.{name}.", partial=partial)


def _raise(issues: list) -> None:
    if not issues:
        return
    first = issues[0]
    more = "".join("; " + (i.text() + (f" ({i.hint})" if i.hint else "") if i.where == first.where else i.line())
                   for i in issues[1:])
    count = f" [{len(issues)} problems]" if len(issues) > 1 else ""
    raise ProfileError(f"{first.where}: {first.text()}{more}{count}",
                       first.hint or f"set '{first.key}' as docs/PROFILES.md describes")


def _typed(data: dict, where: str, source: str = "") -> Profile:
    issues: list = []
    prof = _check(data, where, issues, partial=False)
    _raise(issues)
    return dataclasses.replace(prof, source=source or where)


# ----------------------------------------------------------------------------- files

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
    return _move_old_keys(data, path)


def _move_old_keys(data: dict, path: Path) -> dict:
    for old, new in MOVED.items():
        holder = data
        for part in old[:-1]:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and old[-1] in holder:
            value = holder.pop(old[-1])
            section = data.setdefault(new[0], {})
            if isinstance(section, dict):
                section.setdefault(new[1], value)
            log.debug("%s: '%s' is now '%s'", path, ".".join(old), ".".join(new))
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


def _load_raw(path: Path, chain: tuple, issues: list) -> dict:
    key = str(path.resolve())
    if key in chain:
        cycle = " -> ".join(Path(c).stem for c in chain + (key,))
        raise ProfileError(f"profile 'extends' cycle: {cycle}", "remove one of the 'extends' links")
    data = _read_yaml(path)
    _check(data, str(path), issues, partial=True)
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data
    if not isinstance(parent_ref, str):
        issues.append(typed.Issue(str(path), "extends", "must be a string", typed.describe(parent_ref)))
        return data
    parent = _load_raw(_locate(parent_ref, path.parent), chain + (key,), issues)
    parent.pop("name", None)
    parent.pop("description", None)
    return _merge(parent, data)


def load(ref: str) -> Profile:
    """Load and resolve a profile by shipped name or file path; every problem reported at once."""
    path = _locate(ref)
    issues: list = []
    data = _load_raw(path, (), issues)
    _raise(issues)
    data.setdefault("name", path.stem)
    return _typed(data, str(path))


def list_profiles() -> list[Profile]:
    return [load(n) for n in shipped_names()]
