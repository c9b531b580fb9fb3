"""`edgepack tune`: build every candidate once, measure it where it will run, pick the fastest that
keeps accuracy, and optionally write a profile that pins it."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import live
from .output import echo, err, fail, guarded, print_json, table


def _csv(text: Optional[str], cast=str) -> list:
    return [cast(x) for x in (text or "").split(",") if x.strip()]


def _target(inventory, limit, known_hosts, accept_new_hosts, connect_timeout):
    if inventory is None:
        if limit:
            fail("--limit needs -i/--inventory (fix: pass -i fleet.yaml --limit HOST)")
        return None
    from ..fleet import FleetOptions, load_inventory
    from ..tune import DeviceTarget

    hosts = guarded(lambda: load_inventory(str(inventory)).select(limit))
    if len(hosts) != 1:
        names = ", ".join(h.name for h in hosts[:8])
        fail(f"tune measures on one device; {'--limit ' + limit if limit else 'the inventory'} selects "
             f"{len(hosts)} ({names}) (fix: pass --limit HOST)")
    opts = guarded(FleetOptions, known_hosts=str(known_hosts) if known_hosts else None,
                   accept_new_hosts=accept_new_hosts, connect_timeout=connect_timeout)
    return DeviceTarget(hosts[0], opts.connector())


def _ms(v) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "-"


def render(result) -> str:
    rows = []
    for i, r in enumerate(result.rows, 1):
        mark = (">" if r.get("winner") else "") + ("*" if r.get("pareto") else "")
        rows.append([mark, str(i), r["label"], r["status"].upper(), _ms(r["p50"]), _ms(r["p90"]), _ms(r["p99"]),
                     _ms(r["load"]), f"{(r['size_bytes'] or 0) / 1e6:.2f}" if r["size_bytes"] else "-",
                     f"{r['peak_rss_bytes'] / 2**20:.0f}" if r.get("peak_rss_bytes") else "-",
                     f"{r['worst_cosine']:.6f}" if r.get("worst_cosine") is not None else "-",
                     (r.get("why") or "")[:90]])
    header = ["", "#", "CANDIDATE", "RESULT", "P50 MS", "P90 MS", "P99 MS", "LOAD MS", "SIZE MB", "RSS MIB",
              "WORST COS", "WHY"]
    lines = [table(rows, header), "> winner   * Pareto front (latency vs worst cosine, passing candidates)"]
    w, b, m = result.winner, result.baseline, result.metric
    if w is None:
        lines.append("no candidate passed the profile's parity thresholds" +
                     (" and the latency budget" if any("budget" in (r.get("why") or "") for r in result.rows) else ""))
    else:
        line = f"winner   {w['label']}: {m} {w[m]:.3f} ms, worst cosine {w['worst_cosine']:.6f}"
        if b is not None and b.get(m):
            line += f" ({b[m] / w[m]:.2f}x faster than the profile's own recipe, {b[m]:.3f} ms)"
        lines.append(line)
    if result.out_profile:
        lines.append(f"profile  {result.out_profile}  (edgepack build SOURCE --profile {result.out_profile})")
    return "\n".join(lines)


def tune(
    source: str = typer.Argument(..., help="the model, as for `edgepack build`"),
    profile: str = typer.Option(..., "--profile", "-p", help="the profile to tune (its thresholds judge)"),
    inputs: Optional[Path] = typer.Option(None, "--inputs", help=".npz of real sample inputs"),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help=".npz of calibration inputs"),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", help="NAME=AxBxC (repeatable)"),
    inventory: Optional[Path] = typer.Option(None, "--inventory", "-i", help="measure on a device of this inventory"),
    limit: Optional[str] = typer.Option(None, "--limit", "-l", help="the one host to measure on"),
    known_hosts: Optional[Path] = typer.Option(None, "--known-hosts", help="known hosts file"),
    accept_new_hosts: bool = typer.Option(False, "--accept-new-hosts", help="trust and record unknown host keys"),
    connect_timeout: float = typer.Option(10.0, "--connect-timeout", help="seconds"),
    budget_ms: Optional[float] = typer.Option(None, "--budget-ms", help="a candidate must run within this"),
    metric: str = typer.Option("p90", "--metric", help="latency metric to rank by: p50, p90, p95, p99, mean"),
    formats_: Optional[str] = typer.Option(None, "--formats", help="only these formats, comma-separated"),
    precisions: Optional[str] = typer.Option(None, "--precisions", help="only these precisions, comma-separated"),
    threads: Optional[str] = typer.Option(None, "--threads", help="thread counts to try, comma-separated"),
    probe_runs: int = typer.Option(1000, "--probe-runs", help="runs per measurement (p99 needs 1000)"),
    probe_seconds: float = typer.Option(1.0, "--probe-seconds", help="minimum seconds per measurement"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="cache folder (default ~/.cache/edgepack/tune)"),
    out_profile: Optional[Path] = typer.Option(None, "--out-profile", help="write a profile pinning the winner"),
    as_json: bool = typer.Option(False, "--json", help="every candidate as JSON on stdout"),
):
    """Find the fastest recipe that keeps accuracy, measured on this host or on one device."""
    from ..tune import TuneOptions
    from ..tune import tune as do_tune

    try:
        thread_list = _csv(threads, int)
    except ValueError:
        fail(f"--threads {threads!r} must be whole numbers, comma-separated (fix: --threads 1,2,4)")
    opts = TuneOptions(source=source, profile=profile, inputs=inputs, calibration=calibration,
                       input_shapes=list(input_shape or []), budget_ms=budget_ms, metric=metric,
                       formats=_csv(formats_), precisions=_csv(precisions), threads=thread_list,
                       probe_runs=probe_runs, probe_seconds=probe_seconds, cache=cache, out_profile=out_profile)
    target = _target(inventory, limit, known_hosts, accept_new_hosts, connect_timeout)
    result = live.fleet_run("tune", as_json, do_tune, opts, target)   # a live board: each candidate, ETA
    if as_json:
        print_json(result.to_dict())
    else:
        echo(render(result))
    if result.winner is None:
        err("edgepack: tune found no candidate inside the profile's thresholds"
            + (f" and --budget-ms {budget_ms}" if budget_ms else "")
            + " (fix: see each candidate's WHY; loosen the budget, or give real --calibration data)")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(tune)
