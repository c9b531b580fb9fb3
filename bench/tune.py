"""Item 5: `edgepack tune`'s pick against the better of onnxruntime's quantize_static /
quantize_dynamic called with their defaults, and against the shipped x86-cpu-int8 recipe — for a conv
net, a transformer (bench/models.py) and a real model of the zoo (PP-OCRv3 angle classifier, with its
real text-line crops) — on this host and on a loopback device (a real sshd, tests/fleet/fleet_harness.py).

Every variant is measured the same way, by the bundle's own agent (`python3 -m agent selftest` with the
same probe) on the same target, in interleaved repetitions; accuracy is the agent's worst output cosine
against the ORIGINAL model's outputs on the bundle's reference inputs. ORT's default models are put into
the fp32 bundle in place of its model (re-hashed), so the agent opens them with the same settings.
Goal: the pick is never slower than either peer at equal or better accuracy (ratio = pick / peer p90: below 1,
the pick is faster). Accuracy is compared by worst cosine: ORT's models sit in the fp32 bundle, whose verdict
applies the fp32 thresholds (recorded as peer_passes_its_bundle_checks).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from packager.errors import short

from . import common

NOISE = 0.05          # latency tolerance for "never slower" on a shared 2-core host
PROBE = ["--runs", "300", "--seconds", "0.5"]
SMOKE_PROBE = ["--runs", "20", "--seconds", "0"]


def _cases(smoke: bool):
    yield "cnn", "conv net", common.factory("cnn", smoke), None, None
    if smoke:
        return
    yield "transformer", "transformer", common.factory("transformer", smoke), None, None
    sys.path.insert(0, str(common.REPO / "tests" / "zoo"))
    try:
        import zoo
        case = next(c for c in zoo.CASES if c.name == "ppocr-cls")
        paths = case.resolve()
    except Exception as exc:  # the zoo is optional for the bench
        print(f"bench tune: zoo case skipped: {short(exc)}", file=sys.stderr)
        return
    finally:
        sys.path.pop(0)
    yield "ppocr-cls", "PP-OCR angle classifier (real)", paths["source"], paths["inputs"], paths["calibration"]


def _rehash(bundle: Path) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    for rel in list(m["files"]):
        data = (bundle / rel).read_bytes()
        m["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    m["model"]["size"] = m["files"][m["model"]["path"]]["size"]
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))


class _Reader:
    def __init__(self, samples):
        self._it = iter(samples)

    def get_next(self):
        return next(self._it, None)


def _calibration(fp32_bundle: Path, calib_npz: Path | None, n: int) -> list[dict]:
    m = json.loads((fp32_bundle / "manifest.json").read_text())
    if calib_npz:   # read as `edgepack build --calibration` reads it (docs/DATA.md)
        from packager.data import load_npz
        from packager.specs import TensorSpec

        return load_npz(calib_npz, [TensorSpec(**s) for s in m["inputs"]], "calibration", limit=n)
    rng = np.random.default_rng(1)
    return [{s["name"]: rng.standard_normal([d if isinstance(d, int) else 1 for d in s["shape"]]).astype(s["dtype"])
             for s in m["inputs"]} for _ in range(n)]


def _ort_defaults(fp32_bundle: Path, calib: list[dict], work: Path) -> tuple[dict, dict]:
    from onnxruntime.quantization import quantize_dynamic, quantize_static

    out, errors = {}, {}
    src = fp32_bundle / "model" / "model.onnx"
    for name, fn in (("ORT quantize_dynamic defaults", lambda d: quantize_dynamic(str(src), str(d))),
                     ("ORT quantize_static defaults", lambda d: quantize_static(str(src), str(d), _Reader(calib)))):
        d = work / name.split()[1]
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(fp32_bundle, d)
        try:
            fn(d / "model" / "model.onnx")
            _rehash(d)
            out[name] = d
        except Exception as exc:  # a default that fails is a finding, not a crash
            errors[name] = f"{type(exc).__name__}: {short(exc, 200)}"
    return out, errors


def _measure(target, bundle: Path, probe: list[str], run_args=()) -> dict:
    report, code = target.selftest(bundle, list(run_args), probe, 600)
    cos = [o.get("cosine") for o in (report.get("parity") or {}).get("outputs") or [] if o.get("cosine") is not None]
    return {"p90": (report.get("latency") or {}).get("p90_ms"), "cosine": min(cos) if cos else None,
            "passed": code == 0, "why": "; ".join((report.get("verdict") or {}).get("reasons") or [])}


def _targets(work: Path, smoke: bool):
    from packager.tune import DeviceTarget, HostTarget

    yield "host", HostTarget()
    sys.path.insert(0, str(common.REPO / "tests" / "fleet"))
    try:
        from fleet_harness import Fleet, _skip_reason
        from packager.fleet import FleetOptions, parse_inventory
    finally:
        sys.path.pop(0)
    reason = _skip_reason()
    if reason:
        print(f"bench tune: loopback device skipped: {reason}", file=sys.stderr)
        return
    fleet = Fleet(Path(tempfile.mkdtemp(prefix="edgepack-bench-tune-")), 1)
    try:
        fleet.start()
        dev = fleet.devices[0]
        host = parse_inventory({"all": {"hosts": {"dev0": dev.vars()}}}).select(None)[0]
        yield "loopback device", DeviceTarget(host, FleetOptions(known_hosts=str(fleet.known_hosts)).connector())
    finally:
        fleet.stop()


def main(argv=None) -> int:
    from packager.tune import TuneOptions, tune
    from .probe import edgepack_cmd

    a = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    reps = a.reps or (1 if a.smoke else 3)
    probe = SMOKE_PROBE if a.smoke else PROBE
    res = common.Result("tune", "edgepack tune's pick vs onnxruntime's quantizer defaults and the shipped recipe",
                        a.smoke)
    work = a.work or Path(tempfile.mkdtemp(prefix="edgepack-bench-tune-"))
    res.command("tune", edgepack_cmd() + ["tune", "SOURCE", "--profile", "x86-cpu-int8", "--formats", "onnx,tflite,openvino",
                                          "--calibration", "calib.npz", "[-i fleet.yaml --limit dev0]"])
    res.command("shipped recipe", edgepack_cmd() + ["build", "SOURCE", "--profile", "x86-cpu-int8"])
    res.command("ORT defaults", "quantize_dynamic(fp32.onnx, out.onnx); quantize_static(fp32.onnx, out.onnx, reader)")
    res.command("measure", "python3 -m agent selftest --json . " + " ".join(probe) + " (each variant, same target)")
    try:
        for where, target in _targets(work, a.smoke):
            facts = target.open()
            try:
                for kind, label, source, inputs, calib_npz in _cases(a.smoke):
                    group = f"{label}, {where}"
                    from packager.pipeline import BuildOptions, build
                    dist = work / where.replace(" ", "-") / kind
                    extra = dict(inputs=Path(inputs) if inputs else None, calibration=Path(calib_npz) if calib_npz else None)
                    fp32 = build(BuildOptions(source=source, profile="x86-cpu", out=dist, force=True, **extra)).bundle
                    calib = _calibration(fp32, Path(calib_npz) if calib_npz else None, 8 if a.smoke else 32)
                    if not calib_npz:
                        np.savez(work / f"calib-{kind}.npz", **{n: np.stack([c[n] for c in calib]) for n in calib[0]})
                        extra["calibration"] = work / f"calib-{kind}.npz"
                    shipped = build(BuildOptions(source=source, profile="x86-cpu-int8", out=dist, force=True, **extra)).bundle
                    peers, errors = _ort_defaults(fp32, calib, work / "variants" / kind)
                    t = tune(TuneOptions(source=source, profile="x86-cpu-int8",
                                         formats=["onnx"] if a.smoke else ["onnx", "tflite", "openvino"],
                                         threads=[facts.get("cpu_count") or 1], probe_runs=int(probe[1]),
                                         probe_seconds=float(probe[3]), cache=work / "cache", **extra), target=target)
                    if t.winner is None:
                        res.note(f"{group}: tune found no passing candidate")
                        continue
                    pick = Path(t.winner["bundle"])
                    w = t.winner
                    pick_args = ["--threads", str(w["threads"]), f"--{w['order_key']}", ",".join(w["order"])]
                    variants = {"tune's pick": pick, "shipped x86-cpu-int8": shipped, **peers}
                    got = {n: [] for n in variants}
                    for rep in range(reps):
                        res.sample_load(f"tune {group} rep {rep + 1}")
                        for name in (list(variants) if rep % 2 == 0 else list(variants)[::-1]):
                            m = _measure(target, variants[name], probe, pick_args if name == "tune's pick" else ())
                            got[name].append(m)
                    pick_p90 = [m["p90"] for m in got["tune's pick"]]
                    pick_cos = min(m["cosine"] for m in got["tune's pick"])
                    for name in variants:
                        if name == "tune's pick":
                            continue
                        p90 = [m["p90"] for m in got[name]]
                        cos = min(m["cosine"] for m in got[name])
                        passed = all(m["passed"] for m in got[name])
                        fast = common.summary(pick_p90)["median"] <= common.summary(p90)["median"] * (1 + NOISE)
                        # ORT's models sit in the fp32 bundle, whose verdict applies fp32 thresholds:
                        # accuracy is compared by worst cosine against the original, for every variant
                        accurate = pick_cos >= cos - 1e-4
                        res.row(group, f"p90 vs {name}", "ms", pick_p90, p90, name,
                                goal=f"pick p90 ≤ peer × {1 + NOISE:.2f} at equal or better accuracy",
                                met=bool(fast and accurate),
                                extra={"pick": t.winner["label"], "pick_worst_cosine": pick_cos,
                                       "peer_worst_cosine": cos, "peer_passes_its_bundle_checks": passed,
                                       "peer_why": got[name][0]["why"]})
                    for name, err in errors.items():
                        res.note(f"{group}: {name}: {err}")
                    res.note(f"{group}: tune picked {t.winner['label']} out of {len(t.rows)} candidates "
                             f"({sum(r['status'] == 'pass' for r in t.rows)} passing) in {t.seconds:.0f} s")
            finally:
                target.close()
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    res.write(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
