"""Can this device run this bundle? The manifest's `needs` against the device's facts.

The build declares what a bundle needs (manifest `needs`, from `needs_section`): the runtime and
the oldest version of it that loads the model (each backend's `requirements(artifact)` derives
it from the model file: ONNX opset and IR version, LiteRT's min_runtime_version, the torch or
OpenVINO that wrote the file), the Python, the architectures and the execution providers the
profile marks as required. `check(needs, facts)` lists every mismatch in words a user can act
on: "onnxruntime 1.16.3 cannot load opset 21 (IR 10); needs >= 1.18".

Facts come in two rounds on a push: device.py's own `facts` (stdlib, before anything is
uploaded: Python, arch, numpy, runtime versions) and the agent's (once the agent is staged,
before the model: providers / delegates / devices). A check with facts that do not say which
providers exist leaves the provider requirement for the second round.

`edgepack tune` and `status` reuse this module. It imports nothing heavy.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Mismatch:
    what: str  # python | arch | numpy | runtime | runtime-version | provider
    message: str  # "onnxruntime 1.16.3 cannot load opset 21 (IR 10); needs >= 1.18"
    fix: str

    def to_dict(self) -> dict:
        return {"what": self.what, "message": self.message, "fix": self.fix}


def version_tuple(text) -> tuple:
    """'1.16.3' -> (1, 16, 3); '2.13.0+cpu' -> (2, 13, 0); junk -> ()."""
    return tuple(int(x) for x in re.findall(r"\d+", str(text or "").split("+")[0])[:3])


def at_least(have, need) -> bool:
    h, n = version_tuple(have), version_tuple(need)
    width = max(len(h), len(n))
    return h + (0,) * (width - len(h)) >= n + (0,) * (width - len(n))


def needs_section(profile, backend, art) -> dict:
    """The manifest's `needs`: what a device must have to run the bundle."""
    runtime = dict(backend.requirements(art))
    runtime.setdefault("name", backend.runtime)
    required = list(getattr(profile.runtime, "require_providers", ()) or ())
    return {"python": profile.device.min_python, "arch": list(profile.device.arch),
            "numpy": True, "runtime": runtime, "providers": required}


def needs_of(manifest: dict) -> dict:
    """The bundle's `needs`; for a manifest written before `needs` existed, what it implies."""
    needs = manifest.get("needs")
    if isinstance(needs, dict):
        return needs
    device = manifest.get("device") or {}
    return {"python": device.get("min_python") or "3.8", "arch": list(device.get("arch") or []),
            "numpy": True, "runtime": {"name": manifest.get("runtime")}, "providers": []}


def check(needs: dict, facts: dict, profile: Optional[str] = None) -> list:
    """Every mismatch between a bundle's needs and a device's facts (empty: it can run)."""
    out = []
    py_need = needs.get("python") or "3.8"
    py = facts.get("python")
    if py and not at_least(py, py_need):
        out.append(Mismatch("python", f"Python {py} is older than the {py_need} the bundle needs",
                            f"point ansible_python_interpreter at a Python >= {py_need}"))
    arch = needs.get("arch") or []
    if arch and facts.get("arch") and facts.get("arch") not in arch:
        target = f"profile {profile!r}" if profile else "the bundle"
        out.append(Mismatch("arch", f"device is {facts.get('arch')}, {target} targets "
                                    f"{'/'.join(arch)}",
                            "rebuild with the profile of this device or --limit the push"))
    if needs.get("numpy", True) and "numpy" in facts and not facts.get("numpy"):
        out.append(Mismatch("numpy", f"device lacks numpy (Python {py})",
                            "install it: pip install numpy"))
    rt = needs.get("runtime") or {}
    name = rt.get("name")
    runtimes = facts.get("runtimes") or {}
    if name and name not in runtimes:
        have = ", ".join(sorted(runtimes)) or "none"
        out.append(Mismatch("runtime", f"device lacks runtime {name} (has: {have})",
                            f"install it on the device: pip install {rt.get('package') or name}"))
        return out
    info = runtimes.get(name) or {}
    have = info.get("version")
    need = _min_for(rt, info)
    if name and need and have and have != "unknown" and not at_least(have, need):
        because = rt.get("because") or "this bundle"
        out.append(Mismatch("runtime-version",
                            f"{name} {have} cannot load {because}; needs >= {need}",
                            f"upgrade it on the device: pip install '{rt.get('package') or name}"
                            f">={need}', or rebuild for the older runtime"
                            + (f" ({rt['older']})" if rt.get("older") else "")))
    offered = _offered(info)
    if offered is not None:
        for p in needs.get("providers") or []:
            if p not in offered:
                out.append(Mismatch("provider", f"{name} on the device has no {p} (has: "
                                                f"{', '.join(offered) or 'none'})",
                                    f"install the {name} build with {p} on the device, or drop "
                                    "it from the profile's runtime.require_providers"))
    return out


def _min_for(rt: dict, info: dict) -> Optional[str]:
    """The minimum version that applies to the device's distribution of the runtime
    (LiteRT: tflite-runtime and tensorflow count in TensorFlow versions, ai-edge-litert has its
    own numbering: `min_version_by` maps distribution -> minimum)."""
    by = rt.get("min_version_by") or {}
    dist = info.get("distribution") or info.get("implementation")
    if by:
        return by.get(dist)
    return rt.get("min_version")


def _offered(info: dict) -> Optional[list]:
    """Providers / delegates / devices the runtime reports, or None when the facts do not say."""
    for key in ("providers", "devices", "delegates"):
        if isinstance(info.get(key), list):
            return list(info[key])
    return None


def describe(facts: dict) -> str:
    """One line for `status`: 'x86_64, Python 3.11.2, onnxruntime 1.16.3 (CPU...)'."""
    if not isinstance(facts, dict):
        return "-"
    parts = [str(facts.get("arch") or "?"), f"Python {facts.get('python') or '?'}"]
    for name, info in sorted((facts.get("runtimes") or {}).items()):
        parts.append(f"{name} {(info or {}).get('version') or '?'}")
    return ", ".join(parts)
