"""`edgepack report` (issue 11, part 2): real pushes (over the local transport: real bundles,
real self-tests, the reports they bring home) to a small fleet with passing and failing
devices, summarized, rendered, and opened in headless Chromium: no console message, the plots
and the group filter in the DOM, a screenshot kept in tests/report/artifacts/."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fleet"))
from browser import CHROMIUM, artifacts_dir, dump_dom, screenshot  # noqa: E402
from fleet_harness import build_bundle, cli_command, derive  # noqa: E402

from packager import report  # noqa: E402
from packager.fleet import FleetOptions, LocalTransport, parse_inventory, push  # noqa: E402

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed "
                                    "(scripts/setup.sh: apt-get install chromium)")


@pytest.fixture(scope="module")
def fleet_reports(tmp_path_factory):
    """Three pushes to five local devices in two groups: v1, v2, then a failing bundle to one;
    one device has no Python at all. Returns (reports dir, inventory, inventory file)."""
    base = tmp_path_factory.mktemp("report-fleet")
    v1 = build_bundle(base / "src", base / "dist")
    m = json.loads((v1 / "manifest.json").read_text())
    v2 = derive(v1, base / "v2", manifest={"version": m["version"] + "-v2"})
    probe = dict(m["probe"], budget_ms=1e-9, budget_metric="p50")
    failing = derive(v1, base / "failing", manifest={"probe": probe,
                                                      "version": m["version"] + "-v3"})
    quick = dict(m["probe"], runs=50, seconds=0.0, warmup_runs=2, warmup_seconds=0.0)
    v1, v2 = (derive(b, base / f"{b.name}-quick", manifest={"probe": quick}) for b in (v1, v2))

    def dev(name, python=sys.executable):
        return {"edgepack_root": str(base / "devices" / name), "ansible_python_interpreter": python}

    data = {"all": {"children": {
        "lab": {"hosts": {"a1": dev("a1"), "a2": dev("a2"), "bad": dev("bad")}},
        "field": {"hosts": {"f1": dev("f1"), "nopy": dev("nopy", "/nonexistent/python3")}}}}}
    inv_file = base / "fleet.yaml"
    import yaml
    inv_file.write_text(yaml.safe_dump(data, sort_keys=False))
    inv = parse_inventory(data, str(inv_file))
    reports = base / "reports"
    o = FleetOptions(reports_dir=str(reports), forks=4)
    local = lambda h: LocalTransport(h.name)  # noqa: E731
    for bundle, limit in ((v1, None), (v2, None), (failing, "bad")):
        push(str(bundle), inv.select(limit), o, connect=local)
    return reports, inv, inv_file


def test_summary_puts_failed_devices_first_with_their_reasons(fleet_reports):
    reports, inv, _ = fleet_reports
    s = report.summarize(str(reports), inv)
    order = [(d["host"], d["state"]) for d in s["devices"]]
    assert order == [("bad", "failed"), ("nopy", "failed"), ("a1", "ok"), ("a2", "ok"),
                     ("f1", "ok")]
    assert s["counts"] == {"failed": 2, "ok": 3} and set(s["groups"]) == {"lab", "field"}
    got = {d["host"]: d for d in s["devices"]}
    assert "self-test failed" in got["bad"]["reasons"][0] and "latency" in got["bad"]["reasons"][0]
    assert got["bad"]["last_push"]["step"] == "selftest"
    assert "nopy:" in got["nopy"]["reasons"][0] and got["nopy"]["latency"] is None
    # the failed push kept v2 current on `bad`: its numbers are v2's, its trend has all three
    assert got["bad"]["current"]["label"].endswith("-v2") and got["bad"]["verdict"]["passed"]
    assert [p["passed"] for p in got["bad"]["trend"]] == [True, True, False]
    a1 = got["a1"]
    assert [p["label"].split()[-1][-3:] for p in a1["trend"]][-1] == "-v2"
    assert len(a1["trend"]) == 2 and all(p["p50_ms"] > 0 for p in a1["trend"])
    lat = a1["latency"]
    assert lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["max_ms"]
    assert lat["p99_ms"] is None and lat["runs"] < 1000  # 50 runs: the agent gives no p99
    assert a1["groups"] == ["lab"] and a1["runtime"]["provider"] == "CPUExecutionProvider"
    assert a1["worst_parity"]["output"] == "y" and a1["worst_parity"]["passed"]
    assert a1["peak_rss_bytes"] > 10 * 2 ** 20


def test_the_html_is_self_contained(fleet_reports):
    reports, inv, _ = fleet_reports
    page = report.render(report.summarize(str(reports), inv))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", page, re.I)
    assert "<script src" not in page and "<link" not in page and "@import" not in page


@needs_chromium
def test_the_page_renders_in_chromium_without_console_messages(fleet_reports, tmp_path):
    reports, _, inv_file = fleet_reports
    out = tmp_path / "fleet.html"
    r = subprocess.run(cli_command() + ["report", "--reports", str(reports), "-i", str(inv_file),
                                        "--out", str(out)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "5 devices" in r.stdout, r.stderr
    dom, console = dump_dom(out.as_uri())
    assert console == [], console
    assert len(re.findall(r'<svg class="chart latency-dist"', dom)) == 1
    assert len(re.findall(r'<g class="dev"', dom)) == 4  # every device with latency (not nopy)
    assert len(re.findall(r'<svg class="chart trend"', dom)) == 4
    # a1, a2, f1: v1 and v2; bad: v1, v2 and the failing release (measured, over budget)
    assert len(re.findall(r'<circle class="release"', dom)) == 2 + 2 + 2 + 3
    assert len(re.findall(r'<rect class="p50-p90"', dom)) == 4
    assert dom.count('<li data-host=') == 2
    assert re.search(r'<button data-group="\*" class="on">all</button>', dom)
    rows = re.findall(r'<tr data-host="([^"]+)"[^>]*?(?: class="([^"]*)")?>', dom)
    assert [h for h, _ in rows] == ["bad", "nopy", "a1", "a2", "f1"]
    assert all("hidden" not in c for _, c in rows)

    # the group filter, as a link: only the field devices stay
    dom, console = dump_dom(out.as_uri() + "#group=field")
    assert console == [], console
    rows = dict(re.findall(r'<tr data-host="([^"]+)"[^>]*?(?: class="([^"]*)")?>', dom))
    assert {h for h, c in rows.items() if "hidden" not in c} == {"f1", "nopy"}
    assert re.search(r'<span id="shown">2</span>', dom)

    png = artifacts_dir() / "fleet-report-local.png"
    assert screenshot(out.as_uri(), png) == []
    assert png.stat().st_size > 20_000
    print(f"screenshot: {png}")


@needs_chromium
def test_the_console_check_catches_a_broken_page(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>nosuch();</script></body></html>")
    _, console = dump_dom(bad.as_uri())
    assert any("nosuch is not defined" in line for line in console), console


def test_json_is_the_same_summary_and_bad_input_is_one_line(fleet_reports, tmp_path):
    reports, _, inv_file = fleet_reports
    r = subprocess.run(cli_command() + ["report", "--reports", str(reports), "-i", str(inv_file),
                                        "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert [d["host"] for d in s["devices"]] == ["bad", "nopy", "a1", "a2", "f1"]
    for args, expect in ((["--reports", str(tmp_path / "none"), "--json"], "does not exist"),
                         (["--reports", str(reports)], "--out fleet.html")):
        r = subprocess.run(cli_command() + ["report", *args], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 2 and expect in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
