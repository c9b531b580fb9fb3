"""Baseline of the real-model zoo with the current code: build + self-test every (case x profile).

    PYTHONPATH=$PWD .venv/bin/python tests/zoo/baseline.py [--only NAME[,NAME]] [--profiles a,b]
                                                            [--timeout 600] [--fresh]

Each build runs `edgepack build ... --out <tmp>/out --json` from an empty folder <tmp>/cwd (what
appears there is recorded), then `edgepack selftest <bundle> --json --runs 20 --seconds 0`.
Results are merged into tests/zoo/baseline.json (keyed by case/profile, so a partial run updates
only its cells; --fresh starts over) and the whole table is written to tests/zoo/BASELINE.md and stdout.
Needs `bash scripts/setup-zoo.sh` first.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import zoo  # noqa: E402

RESULTS = HERE / "baseline.json"
TABLE = HERE / "BASELINE.md"
EDGEPACK = [sys.executable, "-c", "from packager.cli import main; main()"]


def run(argv: list[str], cwd: Path, env: dict, timeout: float) -> tuple[int | None, str, str, float]:
    t0 = time.monotonic()
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        rc = None
    return rc, out, err, time.monotonic() - t0


# Third-party messages that reach stderr through edgepack's log handler (so they carry its prefix).
RELAYED = re.compile(r"Expected bias|Please consider|pre-processing before quantization|to be an initializer|"
                     r"Quantization parameters for tensor|Inference failed or unsupported type|"
                     r"symbolic shape inference")


def own(line: str) -> bool:
    if line.startswith("edgepack:") and RELAYED.search(line):
        return False
    return line.startswith("edgepack") or line.startswith("warning: ") or line.startswith("[agent")


def chatter(stderr: str) -> list[str]:
    """stderr lines that edgepack did not write (third-party libraries), tracebacks folded."""
    lines = [ln.rstrip() for ln in stderr.splitlines() if ln.strip()]
    return [ln for ln in lines if not own(ln)]


def summarize_chatter(lines: list[str], keep: int = 4) -> dict:
    seen: dict[str, int] = {}
    for ln in lines:
        key = re.sub(r"0x[0-9a-f]+|\d+(\.\d+)?", "#", ln.strip())[:110]
        seen[key] = seen.get(key, 0) + 1
    top = sorted(seen.items(), key=lambda kv: -kv[1])[:keep]
    return {"lines": len(lines), "distinct": len(seen), "top": [f"{n}x {k}" for k, n in top]}


def error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    fixes = [ln for ln in lines if ln.startswith("edgepack:") and "(fix:" in ln]
    mine = [ln for ln in lines if ln.startswith("edgepack:") and not re.match(
        r"edgepack: (loading|running the original|converting|quantizing|host parity on|writing|timing|"
        r"calibrating|checking)", ln)]
    line = (fixes or mine or lines or ["(no output)"])[-1]
    return line[:300]


def leftovers(cwd: Path) -> list[str]:
    found = []
    for p in sorted(cwd.rglob("*")):
        if p.is_file():
            found.append(f"{p.relative_to(cwd)} ({p.stat().st_size / 1e6:.1f} MB)")
        elif p.is_dir() and not any(p.iterdir()):
            found.append(f"{p.relative_to(cwd)}/ (empty dir)")
    return found


def cosines(parity: dict | None) -> dict[str, float | None]:
    if not parity:
        return {}
    return {o["name"]: o.get("cosine") for o in parity.get("outputs", [])}


def one(case: zoo.Case, profile: str, timeout: float) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"zoo-{case.name}-{profile}-"))
    cwd, out = tmp / "cwd", tmp / "out"
    cwd.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), **case.env())
    rec: dict = {"case": case.name, "profile": profile}
    try:
        argv = case.build_argv(profile, out)
        rec["command"] = "edgepack " + " ".join(a.replace(str(ROOT) + "/", "") for a in argv)
        rc, so, se, secs = run(EDGEPACK + argv, cwd, env, timeout)
        rec.update(build_rc=rc, build_seconds=round(secs, 1), build_chatter=summarize_chatter(chatter(se)),
                   leftovers=leftovers(cwd))
        if rc != 0:
            rec["build"] = "timeout" if rc is None else f"exit {rc}"
            rec["error"] = f"timed out after {timeout:.0f} s" if rc is None else error_line(se)
            return rec
        res = json.loads(so)
        man = res["manifest"]
        rec.update(build="ok", warnings=[w[:200] for w in res.get("warnings", [])],
                   host_cosine=cosines(man.get("host_parity")), route=man.get("conversion", {}).get("route"),
                   precision=man.get("precision"), quantization=man.get("quantization"),
                   model_bytes=man.get("model", {}).get("size"),
                   passes=[p["name"] for p in man.get("conversion", {}).get("passes", []) if "kept" not in p["changed"]],
                   cache=man.get("conversion", {}).get("cache"))
        rc, so, se, secs = run(EDGEPACK + ["selftest", res["bundle"], "--json", "--runs", "20", "--seconds", "0"],
                               cwd, env, 300)
        rec["selftest_chatter"] = summarize_chatter(chatter(se))
        rec["selftest_seconds"] = round(secs, 1)
        if rc is None:
            rec["selftest"] = "timeout"
            return rec
        try:
            rep = json.loads(so)
        except json.JSONDecodeError:
            rec["selftest"] = f"exit {rc}"
            rec["selftest_error"] = error_line(se)
            return rec
        v = rep.get("verdict", {})
        rec.update(selftest=v.get("status"), selftest_reasons=[r[:200] for r in v.get("reasons", [])],
                   device_cosine=cosines(rep.get("parity")),
                   p50_ms=(rep.get("latency") or {}).get("p50_ms"),
                   runtime=(rep.get("runtime") or {}).get("provider") or (rep.get("runtime") or {}).get("name"))
        return rec
    except zoo.ZooMissing as exc:
        rec.update(build="skipped", error=str(exc))
        return rec
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fmt_cos(d: dict) -> str:
    if not d:
        return ""
    return "; ".join(f"{k.split('/')[-1][:22]} {v:.5f}" if isinstance(v, (int, float)) else f"{k} -" for k, v in d.items())


def table(results: dict) -> str:
    rows = [r for c, p in zoo.matrix() if (r := results.get(f"{c.name}/{p}"))]
    ok = [r for r in rows if r.get("build") == "ok" and r.get("selftest") == "pass"]
    built = [r for r in rows if r.get("build") == "ok"]
    out = ["# Zoo baseline (current code)", "",
           f"{len(ok)} of {len(rows)} (case x profile) cells build **and** pass the self-test; "
           f"{len(built)} build. Made by `PYTHONPATH=$PWD .venv/bin/python tests/zoo/baseline.py` "
           "(each build from an empty cwd; self-test `--runs 20 --seconds 0`). Cases: tests/zoo/README.md.", "",
           "| case | profile | build | self-test | cosine per output (device) | build s | stderr chatter (build/selftest lines) | left in cwd |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r.get("build", "?")
        if b != "ok":
            b = f"{b}: {r.get('error', '')}".replace("|", "\\|")[:260]
        st = r.get("selftest", "")
        if st and st != "pass":
            st = f"{st}: {'; '.join(r.get('selftest_reasons', []) or [r.get('selftest_error', '')])}"[:200]
        cos = fmt_cos(r.get("device_cosine") or r.get("host_cosine") or {})
        ch = f"{r.get('build_chatter', {}).get('lines', 0)}/{r.get('selftest_chatter', {}).get('lines', '-')}"
        left = ", ".join(r.get("leftovers", [])) or ""
        out.append(f"| {r['case']} | {r['profile']} | {b} | {st} | {cos} | {r.get('build_seconds', '')} | {ch} | "
                   f"{left.replace('|', '/')} |")
    out += ["", "## Third-party stderr chatter (most frequent lines per cell, numbers folded to #)", ""]
    for r in rows:
        tops = r.get("build_chatter", {}).get("top", []) + [
            "selftest: " + t for t in r.get("selftest_chatter", {}).get("top", [])]
        if tops:
            out.append(f"- **{r['case']} / {r['profile']}**: " + " · ".join(f"`{t[:120]}`" for t in tops[:5]))
    out += ["", "## Warnings edgepack printed on successful builds", ""]
    for r in rows:
        if r.get("warnings"):
            out.append(f"- **{r['case']} / {r['profile']}**: " + " · ".join(w[:160] for w in r["warnings"]))
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--profiles", default="")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--fresh", action="store_true")
    a = ap.parse_args()
    results = {} if a.fresh or not RESULTS.is_file() else json.loads(RESULTS.read_text())
    only = [s for s in a.only.split(",") if s]
    profiles = [s for s in a.profiles.split(",") if s]
    for case, profile in zoo.matrix(only, profiles):
        print(f"== {case.name} / {profile}", file=sys.stderr, flush=True)
        r = one(case, profile, a.timeout)
        results[f"{case.name}/{profile}"] = r
        print(f"   {r.get('build')} {r.get('error', '')[:160]} | selftest {r.get('selftest', '-')} "
              f"| {fmt_cos(r.get('device_cosine') or {})} | {r.get('build_seconds')} s", file=sys.stderr, flush=True)
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))
    md = table(results)
    TABLE.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
