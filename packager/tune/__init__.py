"""`edgepack tune`: the fastest recipe that keeps accuracy, measured where it will run.

Every candidate the target can run (space.py) is built once on this host (pipeline.build with a
profile patch; host parity included), cached by content (store.py), then self-tested by the bundle's
own agent on the target (targets.py: this host, or one device over SSH in a scratch folder) under
each run setting. select.py marks the Pareto front and the winner; `out_profile` pins it.
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import __version__, formats, profiles, progress, sources
from ..errors import CheckFailed, EdgepackError, UsageError
from . import select, space
from .store import Store, default_dir, file_digest, key
from .targets import DeviceTarget, HostTarget

log = logging.getLogger(__name__)

__all__ = ["TuneOptions", "TuneResult", "tune", "HostTarget", "DeviceTarget"]

METRICS = ("p50", "p90", "p95", "p99", "mean")


@dataclass
class TuneOptions:
    source: str
    profile: str
    inputs: Path | None = None
    calibration: Path | None = None
    input_shapes: list[str] = field(default_factory=list)
    budget_ms: float | None = None
    metric: str = "p90"
    formats: list[str] = field(default_factory=list)      # restrict the candidates
    precisions: list[str] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    probe_runs: int = 1000                                 # p99 needs 1000 runs
    probe_seconds: float = 1.0
    cache: Path | None = None
    out_profile: Path | None = None
    selftest_timeout: float = 600.0


@dataclass
class TuneResult:
    target: str
    facts: dict
    rows: list[dict]
    winner: dict | None
    baseline: dict | None                                   # the profile's own recipe, as measured
    metric: str
    out_profile: Path | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"target": self.target, "metric": self.metric, "candidates": self.rows,
                "winner": self.winner, "baseline": self.baseline, "seconds": round(self.seconds, 3),
                "out_profile": str(self.out_profile) if self.out_profile else None,
                "facts": {k: self.facts.get(k) for k in ("hostname", "arch", "python", "cpu_count", "runtimes")}}


def _check(opts: TuneOptions) -> None:
    if opts.metric not in METRICS:
        raise UsageError(f"--metric {opts.metric!r} is not one of {', '.join(METRICS)}", "use --metric p90")
    if opts.budget_ms is not None and opts.budget_ms <= 0:
        raise UsageError(f"--budget-ms must be > 0, got {opts.budget_ms}", "pass a positive number of ms")
    if opts.probe_runs < 1:
        raise UsageError(f"--probe-runs must be >= 1, got {opts.probe_runs}", "pass --probe-runs 1000")


def tune(opts: TuneOptions, target=None, on_progress: Callable[[dict], None] | None = None) -> TuneResult:
    """target: HostTarget() (default) or DeviceTarget(host, connect)."""
    _check(opts)
    t0 = time.perf_counter()
    notify = on_progress or (lambda event: None)
    base = profiles.load(opts.profile)
    src = sources.load(opts.source, _shapes(opts))   # fails early for a bad source; its hash keys the cache
    store = Store(opts.cache or default_dir())
    target = target or HostTarget()
    lent = target.is_open                    # a caller's open target stays open for the caller
    try:
        facts = target.open()
        available = facts.get("runtimes") or {}
        builds = space.builds(base, src.kind, available, opts.formats, opts.precisions)
        if not builds:
            raise EdgepackError(f"no candidate: {target.name} runs {sorted(available) or 'no runtime'}, and the "
                                "source reaches none of those formats", "install a runtime on the target")
        plan = [(b, r) for b in builds for r in space.runs(formats.get(b.format), available,
                                                           facts.get("cpu_count"), base, opts.threads)]
        rows, done = [], 0
        notify({"phase": "start", "total": len(plan), "builds": len(builds)})
        board = progress.board("tune", [f"{b.label}, {r.label}" for b, r in plan])
        built = {}
        try:
            for b, run in plan:
                label, started = f"{b.label}, {run.label}", time.monotonic()
                if b not in built:
                    board.update(label, "building")
                    notify({"phase": "build", "label": b.label, "done": done, "total": len(plan)})
                    built[b] = _build(b, opts, base, store, src.sha256)
                entry, bundle_dir = built[b]
                row = _row(b, run, entry, bundle_dir)
                if entry["status"] == "ok":
                    board.update(label, f"measuring on {target.name}")
                    notify({"phase": "run", "label": label, "done": done, "total": len(plan)})
                    _measure(row, run, bundle_dir, entry, target, store, opts)
                rows.append(row)
                done += 1
                board.finish(label, ok=row["status"] == "pass", status=row["status"],
                             seconds=time.monotonic() - started)
                notify({"phase": "done", "label": label, "done": done, "total": len(plan), "status": row["status"]})
        finally:
            board.close()
        select.pareto(rows, opts.metric)
        best = select.winner(rows, opts.metric, opts.budget_ms)
        baseline = _baseline(rows, base)
        for r in rows:
            r["winner"] = r is best
        out = None
        if best is not None and opts.out_profile:
            ref = opts.profile if opts.profile in profiles.shipped_names() else str(Path(opts.profile).resolve())
            out = select.write_profile(opts.out_profile, ref, base.name, best, opts.source, target.name,
                                       opts.metric, baseline)
        return TuneResult(target.name, facts, rows, best, baseline, opts.metric, out, time.perf_counter() - t0)
    finally:
        if not lent:
            target.close()


def _shapes(opts: TuneOptions) -> dict:
    from ..specs import parse_input_shapes

    return parse_input_shapes(opts.input_shapes)


def _build(b: space.Build, opts: TuneOptions, base, store: Store, source_sha: str):
    """(cache entry, bundle folder): built once per content key; a failed build is cached too."""
    from ..pipeline import BuildOptions, build

    k = key("build", __version__, source_sha, base.to_dict(),
            b.patch, file_digest(opts.inputs) if opts.inputs else None,
            file_digest(opts.calibration) if opts.calibration else None, opts.input_shapes)
    cached = store.build(k)
    if cached is not None:
        return cached, (store.bundle_path(k, cached) if cached["status"] == "ok" else None)
    with tempfile.TemporaryDirectory(prefix="edgepack-tune-") as tmp:
        bo = BuildOptions(source=opts.source, profile=opts.profile, out=Path(tmp), inputs=opts.inputs,
                          calibration=opts.calibration, input_shapes=list(opts.input_shapes),
                          profile_patch=b.patch, version="tune", name="candidate",
                          command="edgepack tune (candidate build)")
        try:
            with _quiet_builds():
                res = build(bo)
        except CheckFailed as exc:
            return store.save_build(k, {"status": "fail", "why": exc.one_line()}, None), None
        except EdgepackError as exc:
            return store.save_build(k, {"status": "error", "why": exc.one_line()}, None), None
        m = res.manifest
        entry = {"status": "ok", "size_bytes": sum(f["size"] for rel, f in m["files"].items() if rel.startswith("model/")),
                 "host_parity": _worst(m["host_parity"]), "warnings": res.warnings}
        entry = store.save_build(k, entry, res.bundle)
    return entry, store.bundle_path(k, entry)


class _quiet_builds:
    """A candidate build's step-by-step log lines and its libraries' output are --debug detail
    inside tune (the progress display stays on the terminal between builds)."""

    def __enter__(self):
        from .. import quiet

        self.logger = logging.getLogger("packager")
        self.level = self.logger.level
        debug = self.logger.isEnabledFor(logging.DEBUG)
        if not debug:
            self.logger.setLevel(logging.WARNING)
        self.hold = quiet.third_party_output("a candidate build", debug=debug)
        self.hold.__enter__()

    def __exit__(self, *exc):
        try:
            self.hold.__exit__(*exc)
        finally:
            self.logger.setLevel(self.level)


def _worst(parity: dict) -> float | None:
    values = [o.get("cosine") for o in (parity or {}).get("outputs") or [] if o.get("cosine") is not None]
    return min(values) if values else None


def _row(b: space.Build, run: space.Run, entry: dict, bundle_dir: Path | None) -> dict:
    row = {"label": f"{b.label}, {run.label}", "bundle": str(bundle_dir) if bundle_dir else None, "format": b.format, "precision": b.precision, "recipe": b.recipe,
           "threads": run.threads, "order": list(run.order), "order_key": run.key, "patch": b.patch,
           "status": entry["status"], "why": entry.get("why", ""), "size_bytes": entry.get("size_bytes"),
           "worst_cosine": entry.get("host_parity")}
    for m in METRICS + ("load",):
        row[m] = None
    row["peak_rss_bytes"] = None
    return row


def _measure(row: dict, run: space.Run, bundle_dir: Path, entry: dict, target, store: Store, opts) -> None:
    from agent.manifest import release_id

    probe = ["--runs", str(opts.probe_runs), "--seconds", str(opts.probe_seconds)]
    k = key("run", release_id(str(bundle_dir)), run.agent_args(), probe)
    result = store.run(target.id, k)
    if result is None:
        try:
            report, code = target.selftest(bundle_dir, run.agent_args(), probe, opts.selftest_timeout)
        except EdgepackError as exc:
            row.update(status="error", why=exc.one_line())
            return
        result = _summary(report, code)
        store.save_run(target.id, k, result)
    row.update(result)


def _summary(report: dict, code: int) -> dict:
    lat = report.get("latency") or {}
    verdict = report.get("verdict") or {}
    rt = report.get("runtime") or {}
    out = {"status": "pass" if code == 0 else ("fail" if code == 1 else "error"),
           "why": "; ".join(verdict.get("reasons") or []), "provider": rt.get("provider"),
           "fallbacks": rt.get("fallbacks") or [], "load": lat.get("load_ms"),
           "peak_rss_bytes": report.get("peak_rss_bytes"), "runs": lat.get("runs")}
    for m in METRICS:
        out[m] = lat.get(f"{m}_ms")
    worst = _worst(report.get("parity"))
    if worst is not None:
        out["worst_cosine"] = worst
    return out


def _baseline(rows: list[dict], base) -> dict | None:
    """The profile's own build at its own run settings (the first row of its build), if measured."""
    for r in rows:
        if r["recipe"] == space.PROFILE:
            return r
    return None
