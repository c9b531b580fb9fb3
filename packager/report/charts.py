"""Inline SVG charts for the fleet report, written by hand (no library, no network).

- `distribution(devices)`: one row per device on a shared log-scale axis: a thin line from min
  to max, a bar from p50 to p90, ticks at p95 and p99 (p99 only where the report has one: the
  agent reports it from 1000 runs on) and a dot at the mean. The report holds percentiles, not
  samples: nothing between them is drawn as if it were known.
- `trend(device)`: p50 (and p90, dashed) of each release the device self-tested, in the order
  they were tested; a failed self-test's point is red.
"""
from __future__ import annotations

import math
from html import escape

FAIL, OK, INK, MUTED = "#c62828", "#2e7d32", "#263238", "#90a4ae"
BAR, LINE2 = "#1e88e5", "#8e24aa"


def _fmt(ms) -> str:
    if ms is None:
        return "-"
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3g}"


def _log_axis(lo: float, hi: float):
    lo = max(lo, 1e-6)
    hi = max(hi, lo * 1.0001)
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if a == b:
        b += 1
    return a, b


def distribution(devices: list, width: int = 900) -> str:
    rows = [d for d in devices if d.get("latency") and d["latency"].get("p50_ms") is not None]
    if not rows:
        return '<p class="muted">No latency in the stored reports.</p>'
    label_w, right, row_h, top = 170, 30, 26, 28
    values = [v for d in rows for k, v in d["latency"].items()
              if k.endswith("_ms") and isinstance(v, (int, float)) and v > 0]
    a, b = _log_axis(min(values), max(values))
    plot_w = width - label_w - right
    height = top + row_h * len(rows) + 30

    def x(ms):
        ms = max(ms, 10.0 ** a)
        return label_w + (math.log10(ms) - a) / (b - a) * plot_w

    parts = [f'<svg class="chart latency-dist" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="latency distribution per device">']
    for e in range(a, b + 1):
        gx = x(10.0 ** e)
        parts.append(f'<line x1="{gx:.1f}" y1="{top - 6}" x2="{gx:.1f}" y2="{height - 24}" '
                     f'stroke="#eceff1"/>')
        parts.append(f'<text x="{gx:.1f}" y="{height - 8}" class="axis" text-anchor="middle">'
                     f'{_fmt(10.0 ** e)} ms</text>')
    parts.append(f'<text x="{label_w}" y="14" class="axis">min–max line · p50–p90 bar · '
                 'p95 | and p99 ‖ ticks (p99 only from 1000 runs) · mean dot · log scale</text>')
    for i, d in enumerate(rows):
        lat, y = d["latency"], top + i * row_h + row_h / 2
        color = FAIL if d["state"] == "failed" else BAR
        host = escape(d["host"])
        parts.append(f'<g class="dev" data-host="{host}" '
                     f'data-groups="{escape(" ".join(d.get("groups") or []))}" '
                     f'data-state="{d["state"]}">')
        parts.append(f'<text x="{label_w - 8}" y="{y + 4:.1f}" text-anchor="end" '
                     f'class="label">{host}</text>')
        lo, hi = lat.get("min_ms"), lat.get("max_ms")
        if lo and hi:
            parts.append(f'<line x1="{x(lo):.1f}" y1="{y:.1f}" x2="{x(hi):.1f}" y2="{y:.1f}" '
                         f'stroke="{MUTED}" stroke-width="1.5"/>')
        p50, p90 = lat.get("p50_ms"), lat.get("p90_ms") or lat.get("p50_ms")
        parts.append(f'<rect class="p50-p90" x="{x(p50):.1f}" y="{y - 7:.1f}" '
                     f'width="{max(2.0, x(p90) - x(p50)):.1f}" height="14" fill="{color}" '
                     f'opacity="0.85"><title>{host}: p50 {_fmt(p50)} ms, p90 {_fmt(p90)} ms, '
                     f'p95 {_fmt(lat.get("p95_ms"))} ms, p99 {_fmt(lat.get("p99_ms"))} ms, '
                     f'min {_fmt(lo)} ms, max {_fmt(hi)} ms, {lat.get("runs") or "?"} runs'
                     '</title></rect>')
        for key, h in (("p95_ms", 9), ("p99_ms", 12)):
            v = lat.get(key)
            if v:
                parts.append(f'<line class="{key[:3]}" x1="{x(v):.1f}" y1="{y - h:.1f}" '
                             f'x2="{x(v):.1f}" y2="{y + h:.1f}" stroke="{INK}" '
                             f'stroke-width="{1.5 if key == "p95_ms" else 2.5}"/>')
        if lat.get("mean_ms"):
            parts.append(f'<circle cx="{x(lat["mean_ms"]):.1f}" cy="{y:.1f}" r="3" '
                         f'fill="white" stroke="{INK}"/>')
        parts.append(f'<text x="{min(x(hi or p90) + 6, width - 2):.1f}" y="{y + 4:.1f}" '
                     f'class="value">{_fmt(p50)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def trend(device: dict, width: int = 420, height: int = 150) -> str:
    every = device.get("trend") or []
    pts = [p for p in every if p.get("p50_ms") is not None]
    broken = [p for p in every if p.get("p50_ms") is None]  # failed before measuring
    note = ("" if not broken else '<p class="muted">no latency (failed before the probe): '
            + escape(", ".join(p["label"] for p in broken)) + "</p>")
    if not pts:
        return (note or '<p class="muted">No self-test stored yet.</p>')
    left, right, top, bottom = 52, 12, 14, 34
    hi = max(max(p.get("p90_ms") or p["p50_ms"] for p in pts), 1e-9) * 1.15
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i):
        return left + (plot_w / 2 if len(pts) == 1 else i * plot_w / (len(pts) - 1))

    def y(v):
        return top + plot_h - v / hi * plot_h

    parts = [f'<svg class="chart trend" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="latency by release">']
    for frac in (0, 0.5, 1):
        gy = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" y1="{gy:.1f}" x2="{width - right}" y2="{gy:.1f}" '
                     f'stroke="#eceff1"/><text x="{left - 4}" y="{gy + 4:.1f}" class="axis" '
                     f'text-anchor="end">{_fmt(hi * frac)}</text>')
    for key, color, dash in (("p90_ms", LINE2, ' stroke-dasharray="4 3"'), ("p50_ms", BAR, "")):
        coords = [(x(i), y(p[key])) for i, p in enumerate(pts) if p.get(key) is not None]
        if len(coords) > 1:
            path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
            parts.append(f'<polyline class="{key[:3]}-line" points="{path}" fill="none" '
                         f'stroke="{color}" stroke-width="2"{dash}/>')
    for i, p in enumerate(pts):
        color = OK if p["passed"] else FAIL
        parts.append(f'<circle class="release" cx="{x(i):.1f}" cy="{y(p["p50_ms"]):.1f}" r="4" '
                     f'fill="{color}"><title>{escape(p["label"])}: p50 {_fmt(p["p50_ms"])} ms, '
                     f'p90 {_fmt(p.get("p90_ms"))} ms, '
                     f'{"passed" if p["passed"] else "FAILED"}</title></circle>')
        short = str(p.get("version") or p["label"])
        label = escape(short if len(short) <= 16 else "…" + short[-15:])
        anchor = ("middle" if len(pts) == 1 else "start" if i == 0
                  else "end" if i == len(pts) - 1 else "middle")
        parts.append(f'<text x="{x(i):.1f}" y="{height - 18}" class="axis" '
                     f'text-anchor="{anchor}">{label}</text>')
    parts.append(f'<text x="{left}" y="{height - 4}" class="axis">ms · p50 solid, p90 dashed · '
                 'one point per release</text></svg>')
    return "".join(parts) + note
