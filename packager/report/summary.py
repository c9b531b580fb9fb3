"""The fleet at a glance, from what `push` stored under --reports (no device is contacted):

    <reports>/fleet-<time>-push.json   every push's result: each device's status, step, reason
    <reports>/<host>/<time>-<id>.json  each self-test report a device sent home

Per device: its last push (status, step, reason), current release, the verdict, latency
percentiles as the report holds them, the worst parity metric, peak RSS, runtime and provider,
the latency of every release it self-tested (the trend), and its inventory groups.
`summarize()` returns the dict `edgepack report --json` prints and the HTML page draws.
"""
from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import Optional

from packager.errors import UsageError
from packager.fleet.rollout import safe_name

log = logging.getLogger(__name__)

SUMMARY_SCHEMA = 1
STATE_ORDER = {"failed": 0, "skipped": 1, "unknown": 2, "ok": 3}
PERCENTILES = ("min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms")


def _read(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        log.warning("skipping unreadable %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _pushes(top: Path) -> dict:
    """host -> (its record in the newest push that included it, that push's file time)."""
    last: dict = {}
    for path in sorted(top.glob("fleet-*-push.json")):
        data = _read(path)
        for d in (data or {}).get("devices") or []:
            if isinstance(d, dict) and d.get("host"):
                last[d["host"]] = (d, (data or {}).get("finished") or path.name.split("-")[1],
                                   (data or {}).get("bundle") or {})
    return last


def _host_reports(folder: Path) -> list:
    out = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            rep = _read(path)
            if rep is not None and isinstance(rep.get("verdict"), dict):
                rep["_file"] = str(path)
                rep["_stamp"] = path.name.split("-", 1)[0]
                out.append(rep)
    return out


def worst_parity(report: dict) -> Optional[dict]:
    """The output closest to failing: lowest cosine, then largest max_abs."""
    outs = [o for o in ((report.get("parity") or {}).get("outputs") or []) if isinstance(o, dict)]
    if not outs:
        return None
    o = min(outs, key=lambda x: (x.get("cosine") if x.get("cosine") is not None else 2.0,
                                 -(x.get("max_abs") or 0.0)))
    th = o.get("thresholds") or {}
    return {"output": o.get("name"), "passed": o.get("passed"), "cosine": o.get("cosine"),
            "cosine_min": th.get("cosine_min"), "max_abs": o.get("max_abs"),
            "atol": th.get("atol"), "top1_agreement": o.get("top1_agreement")}


def _release_label(report: dict) -> str:
    b = report.get("bundle") or {}
    rid = str(report.get("bundle_id") or "")[:8]
    name = " ".join(str(x) for x in (b.get("name"), b.get("version")) if x)
    return name or rid or "?"


def _trend(reports: list) -> list:
    """One point per release, in the order each was first self-tested (its latest report)."""
    order, latest = [], {}
    for rep in reports:
        rid = rep.get("bundle_id") or rep["_file"]
        if rid not in latest:
            order.append(rid)
        latest[rid] = rep
    points = []
    for rid in order:
        rep = latest[rid]
        lat = rep.get("latency") or {}
        points.append({"release_id": rep.get("bundle_id"), "label": _release_label(rep),
                       "version": (rep.get("bundle") or {}).get("version"),
                       "when": rep["_stamp"], "passed": bool(rep["verdict"].get("passed")),
                       **{k: lat.get(k) for k in ("p50_ms", "p90_ms", "p99_ms")}})
    return points


def _device(host: str, groups: list, push: Optional[tuple], reports: list) -> dict:
    rec, when, bundle = push if push else ({}, None, {})
    status = rec.get("status")
    current = rec.get("current") if rec else None
    ok_reports = [r for r in reports if r["verdict"].get("passed")]
    if current is None and ok_reports:
        # the push failed before the device said (at prepare) what is current: a release is
        # activated only after a passing self-test, so the newest pass is the best guess
        current = ok_reports[-1].get("bundle_id")
    # the report to show: the current release's newest, else the newest of all
    shown = next((r for r in reversed(reports) if current and r.get("bundle_id") == current),
                 reports[-1] if reports else None)
    if rec:
        state = ("ok" if status in ("activated", "unchanged", "retested", "rolled-back",
                                    "reachable") else "skipped" if status == "skipped"
                 else "failed")
    elif reports:
        state = "ok" if reports[-1]["verdict"].get("passed") else "failed"
    else:
        state = "unknown"
    last_report = reports[-1] if reports else None
    reasons = []
    if state == "failed":
        if rec.get("reason"):
            reasons.append(rec["reason"] + (f" (fix: {rec['hint']})" if rec.get("hint") else ""))
        elif last_report:
            reasons += list(last_report["verdict"].get("reasons") or [])
    cur_rep = next((r for r in reversed(reports) if r.get("bundle_id") == current), None)
    lat = (shown or {}).get("latency") or {}
    rt = (shown or {}).get("runtime") or {}
    return {
        "host": host, "groups": list(groups), "state": state,
        "last_push": ({"status": status, "step": rec.get("step"), "reason": rec.get("reason"),
                       "hint": rec.get("hint"), "release_id": rec.get("release_id"),
                       "bundle": {k: bundle.get(k) for k in ("name", "version", "profile")},
                       "finished": when, "seconds": rec.get("seconds")} if rec else None),
        "reasons": reasons,
        "current": ({"release_id": current, "label": _release_label(cur_rep) if cur_rep else
                     str(current)[:12]} if current else None),
        "verdict": (shown or {}).get("verdict"),
        "report_release": _release_label(shown) if shown else None,
        "report_file": (shown or {}).get("_file"),
        "latency": ({k: lat.get(k) for k in PERCENTILES} | {"runs": lat.get("runs"),
                                                            "provider": lat.get("provider")}
                    if lat else None),
        "worst_parity": worst_parity(shown) if shown else None,
        "peak_rss_bytes": (shown or {}).get("peak_rss_bytes"),
        "runtime": ({"name": rt.get("name"), "version": rt.get("version"),
                     "provider": rt.get("provider")} if rt else None),
        "trend": _trend(reports),
    }


def summarize(reports_dir: str, inventory=None) -> dict:
    """The summary of a reports folder (and the inventory's hosts and groups, when given)."""
    top = Path(reports_dir)
    if not top.is_dir():
        raise UsageError(f"reports folder {reports_dir} does not exist",
                         "pass --reports DIR: the folder `edgepack push --reports` wrote")
    pushes = _pushes(top)
    folders = {}
    for host, (rec, _, _) in pushes.items():
        if rec.get("report_file"):
            folders[host] = Path(rec["report_file"]).parent.name


    names = list(inventory.hosts) if inventory is not None else []
    known_folders = {folders.get(h) or safe_name(h) for h in names + list(pushes)}
    extra = sorted(p.name for p in top.iterdir() if p.is_dir() and p.name not in known_folders)
    if inventory is None:
        names = sorted(set(pushes) | set(extra))
    else:
        names += [n for n in sorted(pushes) if n not in inventory.hosts]
    groups = {} if inventory is None else {g: list(m) for g, m in sorted(inventory.groups.items())}
    devices = []
    for host in names:
        member = [g for g, m in groups.items() if host in m]
        folder = top / (folders.get(host) or safe_name(host))
        if not folder.is_dir() and (top / host).is_dir():
            folder = top / host
        devices.append(_device(host, member, pushes.get(host), _host_reports(folder)))
    order = {h: i for i, h in enumerate(names)}
    devices.sort(key=lambda d: (STATE_ORDER[d["state"]], order[d["host"]]))
    counts = {s: sum(1 for d in devices if d["state"] == s) for s in STATE_ORDER}
    if not devices:
        raise UsageError(f"no device reports under {reports_dir}",
                         "push a bundle first (edgepack push ... --reports DIR), or pass -i")
    return {"summary_schema": SUMMARY_SCHEMA, "reports_dir": str(top),
            "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "inventory": getattr(inventory, "path", None), "groups": groups,
            "counts": {k: v for k, v in counts.items() if v}, "devices": devices}
