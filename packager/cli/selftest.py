"""`edgepack selftest`: run a bundle's own agent in a separate process, as a device would."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .output import echo, err, guarded, print_json, table


def selftest(
    bundle: Path = typer.Argument(..., help="bundle folder or .tar.gz"),
    python: Optional[str] = typer.Option(None, "--python", help="interpreter to run the agent with (default: this one)"),
    runs: Optional[int] = typer.Option(None, "--runs", help="override the probe's minimum run count"),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="override the probe's minimum time"),
    as_json: bool = typer.Option(False, "--json", help="print the report (JSON) on stdout, nothing else"),
):
    """Run the bundle's own agent in a separate process, as a device would."""
    from ..selftest import run_local

    report, code = guarded(run_local, bundle, python=python, runs=runs, seconds=seconds)
    if as_json:
        print_json(report)
    else:
        echo(render_report(report))
    if code != 0:
        err(f"edgepack: {verdict_line(bundle, report)}")
    raise typer.Exit(code)


def verdict_line(bundle, report: dict) -> str:
    """One stderr line for a self-test that did not pass: what, why and the fix."""
    v = report.get("verdict") or {}
    reasons = list(v.get("reasons") or ["no reason given"])
    what, _, fix = " ".join(reasons[0].split()).partition(" (fix: ")
    more = f" (+{len(reasons) - 1} more, see the report)" if len(reasons) > 1 else ""
    fix = fix[:-1] if fix.endswith(")") else fix
    if not fix:
        fix = ("rebuild or copy the bundle again" if v.get("status") == "unusable" else
               "see the report; loosen the profile's thresholds or budget only if the result is acceptable")
    return f"self-test of {bundle} {str(v.get('status', 'fail')).upper()}: {what}{more} (fix: {fix})"


def render_report(r: dict) -> str:
    v = r["verdict"]
    b = r.get("bundle") or {}
    lines = [f"bundle   {b.get('name', '?')}-{b.get('version', '?')}-{b.get('profile', '?')}  "
             f"(id {str(r.get('bundle_id'))[:12]})"]
    rt = r.get("runtime")
    dev = r.get("device") or {}
    if rt:
        lines.append(f"runtime  {rt['name']} {rt['version']}  provider {rt.get('provider')}  threads {rt.get('threads')}"
                     f"  on {dev.get('hostname')} ({dev.get('arch')}, Python {dev.get('python')})")
        for fb in rt.get("fallbacks") or []:
            lines.append(f"         fallback: {fb}")
    rows = []
    integ = r.get("integrity")
    if integ:
        rows.append(["integrity", "PASS" if integ["passed"] else "FAIL",
                     f"{integ['files_checked']}/{integ['files_listed']} files" if integ["passed"]
                     else "; ".join(integ["problems"][:3])])
    par = r.get("parity")
    if par:
        for o in par["outputs"]:
            detail = (f"max_abs {o['max_abs']:.3g}  cosine {o['cosine']:.6f}" if "cosine" in o
                      else "; ".join(o["failures"]))
            if "top1_agreement" in o:
                detail += f"  top1 {o['top1_agreement']:.3f}"
            rows.append([f"parity {o['name']}", "PASS" if o["passed"] else "FAIL", detail])
    lat = r.get("latency")
    if lat:
        budget = lat.get("budget") or {}
        res = "-" if budget.get("passed") is None else ("PASS" if budget["passed"] else "FAIL")
        detail = (f"p50 {lat['p50_ms']:.3f} ms  p90 {lat['p90_ms']:.3f} ms  mean {lat['mean_ms']:.3f} ms  "
                  f"({lat['runs']} runs; load {lat['load_ms']:.1f} ms, first {lat['first_run_ms']:.2f} ms)")
        if budget.get("budget_ms") is not None:
            detail += f"  budget {budget['metric']} <= {budget['budget_ms']} ms"
        rows.append(["latency", res, detail])
    if r.get("peak_rss_bytes"):
        rows.append(["peak RSS", "-", f"{r['peak_rss_bytes'] / 2**20:.1f} MiB"])
    rows.append(["verdict", v["status"].upper(), "; ".join(v["reasons"])])
    lines.append(table(rows, ["CHECK", "RESULT", "DETAIL"]))
    for note in r.get("notes") or []:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command()(selftest)
