"""build(): source -> convert -> quantize -> host parity -> bundle."""
from __future__ import annotations

import datetime
import getpass
import logging
import platform
import shlex
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from . import __version__, bundle, data, hostbench, profiles, sources
from . import parity as host_parity
from .errors import DataError, UsageError
from .formats import MODEL_FILE, Format, converter, int8_mode, quantizer
from .specs import TensorSpec, parse_input_shapes

import agent

log = logging.getLogger(__name__)


@dataclass
class BuildOptions:
    source: str
    profile: str
    out: Path = Path("dist")
    format: str | None = None
    precision: str | None = None
    input_shapes: list[str] = field(default_factory=list)
    inputs: Path | None = None
    calibration: Path | None = None
    name: str | None = None
    version: str | None = None
    budget_ms: float | None = None
    sign_key: Path | None = None
    force: bool = False
    command: str | None = None
    torchscript_mode: str | None = None     # auto | trace | script (TorchScript targets)


@dataclass
class BuildResult:
    bundle: Path
    manifest: dict
    warnings: list[str]


def _versions(kind: str) -> dict:
    names = ["numpy", "onnx", "onnxruntime", "onnxconverter-common"]
    if kind in ("torch", "torchscript", "exported"):
        names += ["torch"]
    if kind in ("keras", "savedmodel"):
        names += ["tensorflow-cpu", "tensorflow", "keras", "tf2onnx"]
    names += ["litert-torch", "ai-edge-quantizer", "ai-edge-litert"]
    out = {"python": platform.python_version(), "edgepack": __version__}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


def resolve_profile(opts: BuildOptions) -> profiles.Profile:
    prof = profiles.load(opts.profile)
    if opts.format or opts.precision:
        prof = prof.with_overrides(opts.format, opts.precision)
    if opts.torchscript_mode:
        prof.data.setdefault("torchscript", {})["mode"] = opts.torchscript_mode
        profiles._check_choices(prof.data, "--torchscript-mode")
    return prof


def build(opts: BuildOptions) -> BuildResult:
    warnings: list[str] = []
    prof = resolve_profile(opts)
    fmt = Format(prof.format)
    convert = converter(fmt)          # fails early for a format this edgepack cannot make
    quantize = quantizer(fmt)
    shapes = parse_input_shapes(opts.input_shapes)
    if opts.version is not None and not _safe_token(opts.version):
        raise UsageError(f"--version '{opts.version}' has characters that do not belong in a folder name",
                         "use letters, digits, '.', '_' and '-'")
    if opts.name is not None and not _safe_token(opts.name):
        raise UsageError(f"--name '{opts.name}' has characters that do not belong in a folder name",
                         "use letters, digits, '.', '_' and '-'")
    if opts.budget_ms is not None and opts.budget_ms <= 0:  # before any conversion work
        raise UsageError(f"--latency-budget-ms must be > 0, got {opts.budget_ms}", "pass a positive number of ms")
    if opts.sign_key is not None and not Path(opts.sign_key).is_file():
        raise UsageError(f"signing key '{opts.sign_key}' does not exist",
                         "create one with `edgepack keygen KEY`, or pass the right path")
    bundle.check_out_dir(opts.out)

    log.info("loading %s", opts.source)
    src = sources.load(opts.source, shapes)
    n_ref = int(prof["parity"]["samples"])
    if opts.inputs:
        ref_inputs = data.load_npz(opts.inputs, src.inputs, "inputs", limit=n_ref)
        input_origin = "file"
    elif src.example is not None and not shapes:
        ref_inputs = [src.example] + data.generate(src.inputs, n_ref - 1) if n_ref > 1 else [src.example]
        input_origin = "generated (seed 0) + factory example"
    else:
        ref_inputs = data.generate(src.inputs, n_ref)
        input_origin = "generated (seed 0)"

    log.info("running the original model on %d reference inputs", len(ref_inputs))
    try:
        ref_outputs = [src.run(x) for x in ref_inputs]
    except Exception as exc:
        from .errors import SourceError
        shapes_txt = ", ".join(f"{k}={list(v.shape)}:{v.dtype}" for k, v in ref_inputs[0].items())
        raise SourceError(f"the model cannot run on its reference inputs ({shapes_txt}): "
                          f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                          "check --input-shape / --inputs against what forward() expects") from exc
    data.check_finite(ref_outputs, "the original model")
    if not src.outputs:
        src.outputs = [TensorSpec(k, v.dtype.name, list(v.shape)) for k, v in ref_outputs[0].items()]

    with tempfile.TemporaryDirectory(prefix="edgepack-build-") as tmp:
        work = Path(tmp)
        log.info("converting to %s", fmt.value)
        art = convert(src, prof, work, ref_inputs[0])
        warnings.extend(art.warnings)

        calib_info = "none"
        calib = None
        if prof.precision == "int8":
            mode = int8_mode(fmt, prof, art)
            if mode == "static":
                limit = int(prof["quantization"]["calibration_samples"])
                if opts.calibration:
                    calib = data.load_npz(opts.calibration, src.inputs, "calibration", limit=limit)
                    calib_info = f"file:{opts.calibration.name} sha256:{sources.sha256_file(opts.calibration)[:16]}"
                elif opts.inputs:
                    calib = data.load_npz(opts.inputs, src.inputs, "inputs", limit=limit)
                    calib_info = "inputs"
                    warnings.append("calibrating static int8 on --inputs: pass --calibration FILE.npz "
                                    "with representative data for better accuracy")
                else:
                    calib = data.generate(src.inputs, limit, seed=1)
                    calib_info = "synthetic"
                    warnings.append("NO CALIBRATION DATA: static int8 is calibrated on random inputs, "
                                    "which rarely match real activations; pass --calibration FILE.npz. "
                                    "The manifest records calibration: synthetic")
        elif opts.calibration:
            warnings.append(f"--calibration is ignored for precision {prof.precision}")

        float_art = art
        if calib is not None:
            calib = [to_model_layout(x, art) for x in calib]
        art = quantize(art, prof, prof.precision, calib, work)
        warnings.extend(w for w in art.warnings if w not in warnings)

        # The vectors and the converted model take inputs in the model's layout (NHWC for a
        # channels-last TF-Lite model); the outputs stay the ORIGINAL model's.
        model_inputs = [to_model_layout(x, art) for x in ref_inputs]
        log.info("host parity on %d samples", len(ref_inputs))
        thresholds = prof.thresholds()
        host_rt = host_parity.load_on_host(art, prof["runtime"])
        converted = host_parity.run_artifact(art, model_inputs, prof["runtime"], rt=host_rt)
        par = host_parity.check(ref_outputs, converted, thresholds, prof.name)
        host_parity.raise_if_failed(par, f"{src.name} -> {fmt.value} {prof.precision} (profile {prof.name})")

        version = opts.version or src.sha256[:8]
        name = opts.name or src.name
        folder = f"{name}-{version}-{prof.name}"
        probe = dict(prof["probe"])
        if opts.budget_ms is not None:
            probe["budget_ms"] = float(opts.budget_ms)
        quant = dict(art.info.get("quantization") or {})
        if prof.precision == "int8":
            quant["calibration"] = calib_info
            speed = hostbench.compare(float_art, art, host_rt, model_inputs[0], prof["runtime"])
            if speed is not None:
                quant["host_latency"] = speed
                if speed["speedup"] < 0.95:  # 5 % margin: timing noise on a busy host
                    warnings.append(
                        f"int8 ran {1 / speed['speedup']:.2f}x SLOWER than fp32 on this host "
                        f"({speed['int8_ms']:.3f} vs {speed['fp32_ms']:.3f} ms median): the CPU may lack "
                        "fast int8 kernels for this model (common for small or conv models on AVX2 CPUs); check on the "
                        "device, or use --precision fp32 / fp16")
        manifest = {
            "schema_version": agent.SCHEMA_VERSION,
            "name": name, "version": version,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "profile": prof.data,
            "format": fmt.value, "precision": prof.precision, "runtime": art.runtime,
            "runtime_settings": dict(prof["runtime"]),
            "inputs": [s.to_dict() for s in art.inputs],
            "outputs": [s.to_dict() for s in art.outputs],
            "parity": {"thresholds": thresholds, "reference": "original model outputs",
                       "inputs": input_origin},
            "probe": probe,
            "device": dict(prof["device"]),
            "conversion": {k: v for k, v in art.info.items() if k != "quantization"},
            "quantization": quant or None,
            "host_parity": par,
            "warnings": warnings,
            "provenance": {
                "source": {"ref": src.ref, "kind": src.kind, "sha256": src.sha256, "notes": src.notes},
                "toolchain": _versions(src.kind),
                "command": opts.command or " ".join(shlex.quote(a) for a in sys.argv),
                "host": socket.gethostname(), "user": _user(),
            },
        }
        out = bundle.write(opts.out, folder, art.path, MODEL_FILE.get(fmt, art.path.name),
                           manifest, model_inputs, ref_outputs, force=opts.force,  # ORIGINAL outputs
                           finalize=_signer(opts.sign_key))
    final_manifest = bundle.load_manifest(out)
    return BuildResult(bundle=out, manifest=final_manifest, warnings=warnings)


def to_model_layout(feeds: dict, art) -> dict:
    """Transpose inputs whose layout the converter changed (art.info['layout_changes'])."""
    changes = (art.info or {}).get("layout_changes") or {}
    if not changes:
        return feeds
    import numpy as np

    return {k: (np.ascontiguousarray(v.transpose(changes[k]["perm"])) if k in changes else v)
            for k, v in feeds.items()}


def _signer(key: Path | None):
    if key is None:
        return None

    def sign(folder: Path) -> None:
        from . import signing

        signing.sign_manifest(str(folder), str(key))

    return sign


def _safe_token(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "._-" for c in text) and not text.startswith(".")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


__all__ = ["BuildOptions", "BuildResult", "build", "DataError"]
