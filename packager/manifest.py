"""The bundle's manifest.json (docs/BUNDLE.md), assembled from what the build measured."""
from __future__ import annotations

import datetime
import getpass
import platform
import shlex
import socket
import sys
from importlib import metadata

import agent

from . import __version__
from .compat import needs_section

# Packages whose versions a build records besides each backend's own (Backend.packages).
TOOLCHAIN = ("numpy", "tensorflow-cpu", "tensorflow", "keras", "tf2onnx")


def toolchain() -> dict:
    from . import formats

    out = {"python": platform.python_version(), "edgepack": __version__}
    names = list(TOOLCHAIN) + [p for b in formats.all_backends() for p in b.packages]
    for name in dict.fromkeys(names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def conversion_section(route, steps: list[dict], passes: list[dict]) -> dict:
    """What converted the model: every step's own record, merged (later steps win), plus the route,
    the steps in order and the graph passes that ran."""
    merged: dict = {}
    for info in steps:
        merged.update({k: v for k, v in info.items() if k not in ("from", "to", "kind")})
    merged["route"] = " -> ".join(s.get("route", s["to"]) for s in steps)
    merged["steps"] = steps
    merged["passes"] = passes
    merged["plan"] = str(route)
    return merged


def build_manifest(*, name, version, profile, backend, art, thresholds, input_origin, probe, conversion,
                   quantization, host_parity, warnings, source, command) -> dict:
    return {
        "schema_version": agent.SCHEMA_VERSION,
        "name": name, "version": version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "profile": profile.to_dict(),
        "format": backend.format.value, "precision": profile.precision, "runtime": backend.runtime,
        "runtime_settings": backend.runtime_settings(profile),
        "inputs": [s.to_dict() for s in art.inputs],
        "outputs": [s.to_dict() for s in art.outputs],
        "parity": {"thresholds": thresholds, "reference": "original model outputs", "inputs": input_origin},
        "probe": probe,
        "device": profile.device.to_dict(),
        "needs": needs_section(profile, backend, art),
        "conversion": conversion,
        "quantization": quantization or None,
        "host_parity": host_parity,
        "warnings": warnings,
        "provenance": {
            "source": {"ref": source.ref, "kind": source.kind.value, "sha256": source.sha256,
                       "notes": list(source.notes)},
            "toolchain": toolchain(),
            "command": command or " ".join(shlex.quote(a) for a in sys.argv),
            "host": socket.gethostname(), "user": _user(),
        },
    }
