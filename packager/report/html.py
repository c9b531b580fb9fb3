"""The fleet report as ONE self-contained HTML file: inline CSS, inline SVG (charts.py), a few
lines of inline script for the group filter; nothing loaded from anywhere.

Failed devices come first, each with its reasons; then the table of every device (release,
verdict, p50 / p90 / p99, worst parity metric, peak RSS, runtime and provider), the latency
distribution of every device, and each device's latency across its releases.
"""
from __future__ import annotations

import json
from html import escape

from packager.report import charts

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#263238;margin:24px;
background:#fafafa}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.muted,.axis{color:#78909c;fill:#78909c;font-size:11px}.label{font-size:12px;fill:#263238}
.value{font-size:11px;fill:#455a64}.counts span{display:inline-block;margin-right:14px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;color:white}
.s-ok{background:#2e7d32}.s-failed{background:#c62828}.s-skipped{background:#ef6c00}
.s-unknown{background:#78909c}table{border-collapse:collapse;background:white;width:100%}
th,td{padding:5px 8px;border-bottom:1px solid #eceff1;text-align:left;vertical-align:top}
th{font-size:12px;color:#546e7a;background:#f5f7f8}td.num{text-align:right;
font-variant-numeric:tabular-nums}.failures{background:#fff5f5;border:1px solid #ffcdd2;
border-radius:6px;padding:8px 14px}.failures li{margin:6px 0}.filters button{margin:0 6px 6px 0;
padding:4px 12px;border:1px solid #b0bec5;border-radius:14px;background:white;cursor:pointer}
.filters button.on{background:#263238;color:white;border-color:#263238}.cards{display:flex;
flex-wrap:wrap;gap:12px}.card{background:white;border:1px solid #eceff1;border-radius:6px;
padding:8px 12px}.card h3{font-size:13px;margin:0 0 4px}.hidden{display:none!important}
.chart{max-width:100%;height:auto}code{font-size:12px}
"""

SCRIPT = """
(function(){
  var buttons=document.querySelectorAll('.filters button');
  function show(group){
    document.querySelectorAll('[data-host]').forEach(function(el){
      var groups=(el.getAttribute('data-groups')||'').split(' ');
      var on=group==='*'||groups.indexOf(group)>=0;
      el.classList.toggle('hidden',!on);
    });
    buttons.forEach(function(b){b.classList.toggle('on',b.getAttribute('data-group')===group);});
    var shown=document.querySelectorAll('tr[data-host]:not(.hidden)').length;
    document.getElementById('shown').textContent=shown;
  }
  buttons.forEach(function(b){b.addEventListener('click',function(){
    var g=b.getAttribute('data-group');
    history.replaceState(null,'',g==='*'?'#':'#group='+encodeURIComponent(g));
    show(g);});});
  var m=/^#group=(.+)$/.exec(location.hash);
  show(m?decodeURIComponent(m[1]):'*');
})();
"""


def _fmt_ms(v) -> str:
    return "-" if v is None else charts._fmt(v)


def _mib(n) -> str:
    return "-" if not n else f"{n / 2 ** 20:.0f} MiB"


def _parity(w) -> str:
    if not w:
        return "-"
    parts = []
    if w.get("cosine") is not None:
        parts.append(f"cos {w['cosine']:.6f}" + (f" (min {w['cosine_min']})"
                                                  if w.get("cosine_min") is not None else ""))
    if w.get("max_abs") is not None:
        parts.append(f"max|Δ| {w['max_abs']:.3g}" + (f" (atol {w['atol']:g})"
                                                      if w.get("atol") is not None else ""))
    head = escape(str(w.get("output") or "?"))
    return f"<code>{head}</code> " + escape(", ".join(parts))


def _attrs(d: dict) -> str:
    return (f'data-host="{escape(d["host"])}" '
            f'data-groups="{escape(" ".join(d.get("groups") or []))}" data-state="{d["state"]}"')


def _row(d: dict) -> str:
    lat = d.get("latency") or {}
    rt = d.get("runtime") or {}
    push = d.get("last_push") or {}
    verdict = d.get("verdict") or {}
    cur = d.get("current") or {}
    if d["state"] == "failed":
        what = escape(push.get("status") or "failed") + (
            f" at {escape(str(push['step']))}" if push.get("step") else "")
    else:
        what = escape(push.get("status") or ("self-tested" if verdict else "no data"))
    cells = [
        f'<b>{escape(d["host"])}</b><br><span class="muted">'
        f'{escape(", ".join(d.get("groups") or [])) or "&nbsp;"}</span>',
        f'<span class="badge s-{d["state"]}">{d["state"]}</span><br>'
        f'<span class="muted">{what}</span>',
        (f'{escape(cur.get("label") or "")}<br><code>{escape(str(cur.get("release_id"))[:12])}'
         '</code>') if cur else "-",
        escape(verdict.get("status") or "-"),
        f'<td class="num">{_fmt_ms(lat.get("p50_ms"))}</td>',
        f'<td class="num">{_fmt_ms(lat.get("p90_ms"))}</td>',
        f'<td class="num" title="null under 1000 runs">{_fmt_ms(lat.get("p99_ms"))}</td>',
        _parity(d.get("worst_parity")),
        f'<td class="num">{_mib(d.get("peak_rss_bytes"))}</td>',
        escape(" ".join(str(x) for x in (rt.get("name"), rt.get("version")) if x) or "-"),
        escape(rt.get("provider") or lat.get("provider") or "-"),
    ]
    tds = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells)
    return f"<tr {_attrs(d)}>{tds}</tr>"


def render(summary: dict) -> str:
    devices = summary["devices"]
    counts = summary.get("counts") or {}
    failed = [d for d in devices if d["state"] in ("failed", "skipped")]
    groups = sorted(summary.get("groups") or {})
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
           "<title>edgepack fleet report</title>",
           f"<style>{CSS}</style></head><body>",
           "<h1>edgepack fleet report</h1>",
           f'<p class="muted">{len(devices)} devices · from {escape(summary["reports_dir"])}'
           + (f' and {escape(summary["inventory"])}' if summary.get("inventory") else "")
           + f' · generated {escape(summary["generated"])}</p>',
           '<p class="counts">' + "".join(
               f'<span><span class="badge s-{s}">{n}</span> {s}</span>'
               for s, n in counts.items()) + "</p>"]
    out.append('<div class="filters"><b>Group:</b> <button data-group="*">all</button>'
               + "".join(f'<button data-group="{escape(g)}">{escape(g)}</button>'
                         for g in groups)
               + ' <span class="muted"><span id="shown">' + str(len(devices))
               + "</span> shown</span></div>")
    if failed:
        out.append('<h2>Failed devices</h2><ul class="failures">')
        for d in failed:
            reasons = d.get("reasons") or [((d.get("last_push") or {}).get("reason") or
                                            "no reason recorded")]
            out.append(f'<li {_attrs(d)}><b>{escape(d["host"])}</b> '
                       f'<span class="badge s-{d["state"]}">{d["state"]}</span><br>'
                       + "<br>".join(escape(r) for r in reasons) + "</li>")
        out.append("</ul>")
    out.append("<h2>Devices</h2><table class=\"devices\"><thead><tr>"
               + "".join(f"<th>{h}</th>" for h in (
                   "Device", "State", "Current release", "Verdict", "p50 ms", "p90 ms",
                   "p99 ms", "Worst parity", "Peak RSS", "Runtime", "Provider"))
               + "</tr></thead><tbody>" + "".join(_row(d) for d in devices) + "</tbody></table>")
    out.append("<h2>Latency distribution</h2>" + charts.distribution(devices))
    out.append('<h2>Latency across releases</h2><div class="cards">')
    for d in devices:
        out.append(f'<div class="card" {_attrs(d)}><h3>{escape(d["host"])}</h3>'
                   + charts.trend(d) + "</div>")
    out.append("</div>")
    data = json.dumps(summary, default=str).replace("</", "<\\/")
    out.append(f'<script type="application/json" id="summary">{data}</script>')
    out.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(out)
