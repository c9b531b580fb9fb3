"""The real-model table of docs/FORMATS.md: every zoo cell built by the CLI and self-tested by the
bundle's agent on this host, with its route, the graph passes that ran, the int8 recipe and the
nodes left in float, parity (worst output cosine, worst slice) and the agent's p50.

    PYTHONPATH=$PWD .venv/bin/python tests/zoo/formats_table.py [--only NAME,...] [--write]

--write replaces the table between the `zoo-table` markers of docs/FORMATS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import zoo  # noqa: E402

EDGEPACK = Path(sys.executable).with_name("edgepack")
BEGIN, END = "<!-- zoo-table:begin -->", "<!-- zoo-table:end -->"


def _cli(*args, env=None, cwd=None):
    return subprocess.run([str(EDGEPACK), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=3600)


def _cell(case, profile, cache) -> dict:
    env = dict(os.environ, **case.env(), EDGEPACK_CACHE=str(cache))
    with tempfile.TemporaryDirectory(prefix="zoo-table-") as tmp:
        t0 = time.perf_counter()
        b = _cli(*case.build_argv(profile, Path(tmp) / "dist"), env=env, cwd=tmp)
        seconds = time.perf_counter() - t0
        if b.returncode != 0:
            why = (b.stderr.strip().splitlines() or ["?"])[-1].removeprefix("edgepack: ")
            return {"result": f"refused (exit {b.returncode})", "why": why, "build_s": seconds}
        out = json.loads(b.stdout)
        m = out["manifest"]
        s = _cli("selftest", out["bundle"], "--runs", "200", "--seconds", "0.2", "--json", env=env)
        report = json.loads(s.stdout)
    conv, quant = m.get("conversion") or {}, m.get("quantization") or {}
    outs = (report.get("parity") or {}).get("outputs") or []
    cos = min((o["cosine"] for o in outs if "cosine" in o), default=None)
    slices = [o["worst_slice"]["cosine"] for o in outs if o.get("worst_slice")]
    return {"result": "pass" if s.returncode == 0 else f"self-test {report['verdict']['status']}",
            "why": "; ".join(report["verdict"]["reasons"])[:200], "build_s": seconds,
            "route": conv.get("plan", ""), "passes": [p["name"] for p in conv.get("passes") or []],
            "recipe": quant.get("recipe_label") or (m["precision"] if m["precision"] != "fp32" else ""),
            "float_nodes": quant.get("float_nodes") or [], "cosine": cos, "worst_slice": min(slices) if slices else None,
            "p50_ms": (report.get("latency") or {}).get("p50_ms"), "size_mb": m["model"]["size"] / 1e6}


def _fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def table(rows: list[tuple]) -> str:
    lines = ["| model | profile | result | route | passes | int8 recipe / precision | left in float | cosine / worst slice | p50 ms | size MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, profile, r in rows:
        if not r.get("route"):
            lines.append(f"| {name} | {profile} | **{r['result']}**: {r['why'][:260]} | | | | | | | |")
            continue
        floats = ", ".join(f"`{n}`" for n in r["float_nodes"][:3]) + (" …" if len(r["float_nodes"]) > 3 else "")
        lines.append(f"| {name} | {profile} | {r['result']} | {r['route']} | {', '.join(r['passes']) or '-'} | "
                     f"{r['recipe'] or 'fp32'} | {floats or '-'} | {_fmt(r['cosine'], '.5f')} / "
                     f"{_fmt(r['worst_slice'], '.4f')} | {_fmt(r['p50_ms'], '.2f')} | {_fmt(r['size_mb'], '.1f')} |")
    ok = sum(1 for _, _, r in rows if r["result"] == "pass")
    lines.append("")
    lines.append(f"{ok} of {len(rows)} cells build and pass the bundled agent's self-test.")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    only = [x for x in a.only.split(",") if x]
    rows = []
    with tempfile.TemporaryDirectory(prefix="zoo-cache-") as cache:
        for case, profile in zoo.matrix(only or None):
            r = _cell(case, profile, cache)
            print(f"{case.name} x {profile}: {r['result']} {r.get('why', '')[:120]}", file=sys.stderr)
            rows.append((case.name, profile, r))
    text = table(rows)
    print(text)
    if a.write:
        doc = REPO / "docs" / "FORMATS.md"
        s = doc.read_text()
        stamp = (f"Made by `PYTHONPATH=$PWD .venv/bin/python tests/zoo/formats_table.py --write` on "
                 f"{time.strftime('%Y-%m-%d')} (this 2-core host; p50 from the agent's probe, 200 runs).")
        block = f"{BEGIN}\n{stamp}\n\n{text}\n{END}"
        if BEGIN in s:
            s = s[:s.index(BEGIN)] + block + s[s.index(END) + len(END):]
        else:
            s = s.rstrip() + "\n\n## Real models (the zoo)\n\n" + block + "\n"
        doc.write_text(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
