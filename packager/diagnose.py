"""`edgepack diagnose`: where a converted or quantized model leaves the original, tensor by tensor.

SOURCE --profile P: the build's own path (route, passes, the int8 recipe search with its fallbacks,
host parity) into a throw-away folder, keeping the per-tensor table of the model the build would
ship, or of the best one it tried when parity fails. BUNDLE: the same for the source and options the
bundle's manifest records (provenance: source path + sha256, the command line, the resolved
profile); when that source is gone, what the manifest recorded at build time.

What it covers: ONNX fp16 and int8 (static QDQ, dynamic) against the float ONNX graph, and TF-Lite
int8 against the float TF-Lite model (same tensor names on both sides). Not covered: a conversion
between formats (ONNX -> TF-Lite / OpenVINO renames every tensor; onnx2tf's own -cotof check is the
one that compares them) and fp32 (the model is the converted graph itself): those get the
per-output parity only, and the result says so.
"""
from __future__ import annotations

import logging
import shlex
import tempfile
from dataclasses import replace
from pathlib import Path

from .errors import UsageError

log = logging.getLogger(__name__)

NOT_COVERED = ("the per-tensor table needs the same tensor names on both sides: {what}; only the outputs "
               "are compared (onnx2tf's own -cotof check compares an ONNX graph with its TF-Lite tensors)")


def diagnose(opts) -> dict:
    """opts: a pipeline.BuildOptions (source, profile, data, overrides). Never writes outside a temp folder."""
    from . import pipeline
    from .parity import ParityFailed

    with tempfile.TemporaryDirectory(prefix="edgepack-diagnose-") as tmp:
        run = replace(opts, out=Path(tmp) / "out", diagnose=True, force=True, sign_key=None)
        try:
            result = pipeline.build(run)
        except ParityFailed as exc:
            return _result(False, exc.details, opts, error=exc.one_line())
        m = result.manifest
        q = m.get("quantization") or {}
        details = {"host_parity": m["host_parity"], "attempts": q.get("attempts") or [],
                   "search_seconds": q.get("search_seconds"), "recipe": q.get("recipe_label"),
                   "float_nodes": q.get("float_nodes") or [], "fallback_cost": q.get("fallback_cost"),
                   "diagnosis": q.get("diagnosis") or _not_covered(m)}
        return _result(True, details, opts, precision=m["precision"], fmt=m["format"])


def _not_covered(m: dict) -> dict:
    what = (f"{m['format']} fp32 is the converted graph itself" if m["precision"] == "fp32"
            else f"{m['format']} {m['precision']}")
    return {"covered": False, "note": NOT_COVERED.format(what=what)}


def _result(passed: bool, details: dict, opts, error: str | None = None, precision: str | None = None,
            fmt: str | None = None) -> dict:
    out = {"source": opts.source, "profile": opts.profile, "parity_passed": passed, **details}
    if error:
        out["error"] = error
    if precision:
        out["precision"], out["format"] = precision, fmt
    return out


# ----------------------------------------------------------------------------- bundles

def options_from_bundle(bundle_dir: Path, folder: Path):
    """The build options a bundle was made with (its manifest's provenance), or a reason why not;
    the bundle's resolved profile is written into `folder`."""
    from agent.manifest import sha256_file

    from . import bundle
    from .pipeline import BuildOptions

    m = bundle.load_manifest(bundle_dir)
    prov = m.get("provenance") or {}
    src = prov.get("source") or {}
    ref = src.get("ref") or ""
    path = Path(ref.rsplit(":", 1)[0]) if ".py:" in ref else Path(ref)
    if not ref or not path.exists():
        return None, m, f"the source '{ref}' the bundle was built from is not on this machine"
    if path.is_file() and ".py:" not in ref and src.get("sha256") and sha256_file(path) != src["sha256"]:
        return None, m, f"the source '{ref}' changed since the bundle was built (sha256 differs)"
    args = _command_args(prov.get("command") or "")
    import yaml

    profile_file = Path(folder) / f"{m['profile']['name']}.yaml"

    profile_file.write_text(yaml.safe_dump(m["profile"], sort_keys=False))
    opts = BuildOptions(source=ref, profile=str(profile_file), input_shapes=args.get("--input-shape", []),
                        inputs=_existing(args.get("--inputs")), calibration=_existing(args.get("--calibration")),
                        torchscript_mode=None, name=m.get("name"), version=m.get("version"))
    return opts, m, None


def _existing(values):
    for v in values or []:
        if Path(v).is_file():
            return Path(v)
    return None


def _command_args(command: str) -> dict:
    """--flag VALUE pairs of a recorded `edgepack build` command line."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    out: dict[str, list[str]] = {}
    for i, w in enumerate(words):
        if w.startswith("--") and "=" in w:
            k, v = w.split("=", 1)
            out.setdefault(k, []).append(v)
        elif w in ("--input-shape", "--inputs", "--calibration") and i + 1 < len(words):
            out.setdefault(w, []).append(words[i + 1])
    return out


def diagnose_bundle(bundle_dir: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="edgepack-diagnose-profile-") as folder:
        opts, m, why = options_from_bundle(bundle_dir, Path(folder))
        if opts is not None:
            out = diagnose(opts)
            out["bundle"] = str(bundle_dir)
            out["profile"] = m["profile"]["name"]      # not the temp file it was rebuilt from
            return out
    q = m.get("quantization") or {}
    return {"bundle": str(bundle_dir), "source": (m.get("provenance") or {}).get("source", {}).get("ref"),
            "profile": m["profile"]["name"], "parity_passed": (m.get("host_parity") or {}).get("passed"),
            "host_parity": m.get("host_parity"), "attempts": q.get("attempts") or [],
            "recipe": q.get("recipe_label"), "float_nodes": q.get("float_nodes") or [],
            "diagnosis": q.get("diagnosis") or {"covered": False, "note": f"{why}: the per-tensor table needs the "
                                                                           "float model; showing what the build recorded"},
            "precision": m["precision"], "format": m["format"]}


def is_bundle(ref: str) -> bool:
    p = Path(ref)
    return p.is_dir() and (p / "manifest.json").is_file()


def check_source_args(ref: str, profile: str | None) -> None:
    if not is_bundle(ref) and not profile:
        raise UsageError(f"'{ref}' is not a bundle, so diagnose needs --profile",
                         "pass --profile NAME (edgepack profiles list), or a bundle folder")
