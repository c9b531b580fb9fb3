"""Which candidate wins: the fastest one inside the profile's parity thresholds and the latency
budget; the Pareto front over (latency, worst parity); the profile that pins the winner."""
from __future__ import annotations

import copy
import datetime
from pathlib import Path


def pareto(rows: list[dict], metric: str) -> None:
    """Mark rows["pareto"] for passing candidates no other passing one beats on both latency and accuracy."""
    ok = [r for r in rows if r["status"] == "pass" and r.get(metric) is not None]
    for r in rows:
        r["pareto"] = False
    for r in ok:
        r["pareto"] = not any(o is not r and o[metric] <= r[metric] and o["worst_cosine"] >= r["worst_cosine"]
                              and (o[metric] < r[metric] or o["worst_cosine"] > r["worst_cosine"]) for o in ok)


def winner(rows: list[dict], metric: str, budget_ms: float | None) -> dict | None:
    for r in rows:
        if r["status"] == "pass" and budget_ms is not None and (r.get(metric) or 0) > budget_ms:
            r["status"], r["why"] = "fail", f"{metric} {r[metric]:.3f} ms > budget {budget_ms} ms"
    ok = [r for r in rows if r["status"] == "pass" and r.get(metric) is not None]
    return min(ok, key=lambda r: (r[metric], -r["worst_cosine"], r["size_bytes"])) if ok else None


def profile_patch(row: dict) -> dict:
    """The winner as profile keys: its build patch plus its run settings."""
    from .. import formats
    from ..profiles import _merge

    patch = _merge(copy.deepcopy(row["patch"]), formats.get(row["format"]).order_patch(row["order"]))
    # pinned even when the profile's own recipe wins (its patch is empty): the tuned profile says what it builds
    patch.setdefault("format", row["format"])
    patch.setdefault("precision", row["precision"])
    patch.setdefault("runtime", {})["threads"] = row["threads"]
    return patch


def write_profile(path: Path, base_ref: str, base_name: str, row: dict, source: str, target: str,
                  metric: str, baseline: dict | None) -> Path:
    import yaml

    patch = profile_patch(row)
    data = {"extends": base_ref, "name": f"{base_name}-tuned",
            "description": f"{base_name} tuned by edgepack tune for {Path(source).name} on {target}: "
                           f"{row['label']} ({metric} {row[metric]:.3f} ms)"}
    data.update(patch)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    lines = [f"# Written by `edgepack tune` on {stamp} for {source} on {target}.",
             f"# Winner: {row['label']}: {metric} {row[metric]:.3f} ms, worst cosine {row['worst_cosine']:.6f}."]
    if baseline is not None and baseline.get(metric):
        lines.append(f"# The profile's own recipe: {baseline['label']}: {metric} {baseline[metric]:.3f} ms "
                     f"({baseline[metric] / row[metric]:.2f}x the winner's time).")
    lines.append("# Build with: edgepack build SOURCE --profile " + str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + yaml.safe_dump(data, sort_keys=False))
    return path
