"""int8 recipes: what is decided once per build (reduce_range from the build host's CPU), and how a
recipe is named in the manifest and on the terminal. Each backend lists the recipes worth measuring
for a model (`Backend.recipes`); packager/quant/recover.py measures them.
"""
from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

from ..formats.base import QuantPlan

INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
CPUINFO = Path("/proc/cpuinfo")


def host_cpu(cpuinfo: Path = CPUINFO) -> dict:
    """The build host's int8-relevant CPU facts: arch and the int8 dot-product flags it has."""
    arch = platform.machine().lower()
    flags: set[str] = set()
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("flags", "features"):
                flags |= set(value.split())
    except OSError:
        return {"arch": arch, "vnni": None, "int8_flags": []}
    x86 = arch in ("x86_64", "amd64", "i686", "i386")
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"}) if x86 else None
    return {"arch": arch, "vnni": vnni, "int8_flags": sorted(flags & set(INT8_FLAGS))}


def resolve_reduce_range(setting, cpu: dict) -> tuple[bool, str]:
    """onnxruntime's advice: 7-bit weights (reduce_range) on x86 without VNNI, where the u8s8 int8
    dot product (vpmaddubsw) can saturate; VNNI (and ARM) do not need it."""
    if setting is not True and setting is not False:
        if cpu.get("vnni") is False:
            return True, (f"build host is {cpu['arch']} without VNNI (flags {', '.join(cpu['int8_flags']) or 'none'}): "
                          "7-bit weights avoid u8s8 saturation")
        if cpu.get("vnni"):
            return False, f"build host has VNNI ({', '.join(f for f in cpu['int8_flags'] if 'vnni' in f or 'amx' in f)})"
        return False, f"build host is {cpu['arch']}: no u8s8 saturation to avoid"
    return bool(setting), "set by the profile"


X86 = {"x86_64", "amd64", "i686", "i386", "x86"}


def resolve_activation_type(setting: str, target_arch: tuple, cpu: dict) -> tuple[str, str]:
    """uint8 activations for x86 targets: onnxruntime's x86 int8 kernels are U8S8 (uint8 activations,
    int8 weights); with int8 activations (S8S8) the same YOLOv8s QDQ model ran 58 ms against 12 ms
    (fp32: 63 ms) on this VNNI host. ARM kernels take S8S8. The profile's device.arch decides, else
    the build host's."""
    if setting in ("int8", "uint8"):
        return setting, "set by the profile"
    arches = {a.lower() for a in target_arch} or {cpu.get("arch", "")}
    if arches and arches <= X86:
        return "uint8", (f"x86 target ({', '.join(sorted(target_arch)) or 'the build host'}): onnxruntime's x86 "
                         "int8 kernels are U8S8")
    return "int8", f"target {', '.join(sorted(arches))}: S8S8"


def resolve(plan: QuantPlan, profile) -> tuple[QuantPlan, dict]:
    """The plan with the target's and the build host's decisions made, and why (the manifest)."""
    if plan.precision != "int8":
        return plan, {}
    quant = profile.quantization
    cpu = host_cpu()
    rr, why = resolve_reduce_range(quant.reduce_range, cpu)
    act, act_why = resolve_activation_type(quant.activation_type, tuple(profile.device.arch), cpu)
    return (dataclasses.replace(plan, reduce_range=rr, activation_type=act),
            {"reduce_range": rr, "reduce_range_why": why, "activation_type": act, "activation_type_why": act_why,
             "build_host_cpu": cpu})


def label(plan: QuantPlan) -> str:
    """'static, Conv/MatMul/Gemm, per-channel, minmax, 3 float' — one recipe on one line."""
    if plan.precision != "int8":
        base = plan.precision
    else:
        ops = "all ops" if not plan.op_types else "/".join(plan.op_types)
        parts = [plan.mode or "?", ops, "per-channel" if plan.per_channel else "per-tensor"]
        if plan.mode == "static":
            parts.append(plan.calibration_method)
            if plan.activation_type == "uint8":
                parts.append("uint8 activations")
        if plan.reduce_range:
            parts.append("reduce-range")
        base = ", ".join(parts)
    if plan.float_tail:
        return base + f", float tail of {plan.float_tail}"
    if plan.float_head:
        return base + f", float head of {plan.float_head}"
    return base + (f", {len(plan.float_nodes)} float" if plan.float_nodes else "")


def describe(plan: QuantPlan) -> dict:
    """The manifest's record of a recipe."""
    out = {"precision": plan.precision}
    if plan.precision == "int8":
        out.update(mode=plan.mode, op_types=list(plan.op_types) if plan.op_types else "all",
                   per_channel=plan.per_channel, reduce_range=plan.reduce_range)
        if plan.mode == "static":
            out["calibration_method"] = plan.calibration_method
            out["activation_type"] = plan.activation_type
    if plan.float_nodes:
        out["float_nodes"] = list(plan.float_nodes)
    if plan.float_tail:
        out["float_tail"] = plan.float_tail
    if plan.float_head:
        out["float_head"] = plan.float_head
    return out


def is_costly(plan: QuantPlan) -> bool:
    """Histogram calibration: 4-9x MinMax's time on the zoo models (bench/zoo_prep.md)."""
    return plan.precision == "int8" and plan.mode == "static" and plan.calibration_method in ("entropy", "percentile")
