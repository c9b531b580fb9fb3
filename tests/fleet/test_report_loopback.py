"""`edgepack report` of a real loopback fleet (sshd per device) with passing and failing devices,
opened in headless Chromium; its screenshot (tests/report/artifacts/fleet-report-loopback.png)
is the one in the README (docs/img/fleet-report.png)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from browser import CHROMIUM, artifacts_dir, dump_dom, screenshot  # noqa: E402
from fleet_harness import build_bundle, derive, run_cli  # noqa: E402


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh)")
def test_report_of_a_loopback_fleet_in_chromium(fleet, bundle_set, tmp_path):
    d = fleet.devices
    quick = {"runs": 200, "seconds": 0.0, "warmup_runs": 5, "warmup_seconds": 0.0}
    v1 = bundle_set["v1"]
    m = json.loads((v1 / "manifest.json").read_text())
    rel = [derive(v1, tmp_path / f"r{i}", manifest={"version": f"1.{i}.0",
                                                     "probe": dict(m["probe"], **quick)})
           for i in range(3)]
    slow = derive(v1, tmp_path / "budget", manifest={
        "version": "1.3.0", "probe": dict(m["probe"], **quick, budget_ms=1e-9,
                                          budget_metric="p90")})
    hosts = {"cam-01": d[0].vars(), "cam-02": d[1].vars(), "cam-03": d[2].vars(),
             "gw-01": d[3].vars(), "gw-02": d[4].vars(ansible_python_interpreter=fleet.python_nort)}
    groups = {"cameras": ["cam-01", "cam-02", "cam-03"], "gateways": ["gw-01", "gw-02"]}
    if fleet.python_oldort:
        hosts["gw-03"] = d[5].vars(ansible_python_interpreter=fleet.python_oldort)
        groups["gateways"].append("gw-03")
    import yaml
    inv = tmp_path / "fleet.yaml"
    inv.write_text(yaml.safe_dump({"all": {
        "vars": {"edgepack_root": "~/ep-report"},
        "children": {g: {"hosts": {h: hosts[h] for h in members}}
                     for g, members in groups.items()}}}, sort_keys=False))
    reports = tmp_path / "edgepack-reports"
    common = ["-i", inv, "--known-hosts", fleet.known_hosts, "--reports", reports]
    for b in rel:
        run_cli("push", b, *common)
    run_cli("push", slow, *common, "--limit", "cam-03")
    if fleet.python_oldort:
        new = build_bundle(tmp_path / "src21", tmp_path / "dist21", opset=21, ir=10)
        run_cli("push", new, *common, "--limit", "gw-03")
    out = tmp_path / "fleet.html"
    r = run_cli("report", "--reports", reports, "-i", inv, "--out", out)
    assert r.returncode == 0, r.stderr
    summary = json.loads(run_cli("report", "--reports", reports, "-i", inv, "--json").stdout)
    states = {x["host"]: x["state"] for x in summary["devices"]}
    failed = ["cam-03", "gw-02"] + (["gw-03"] if fleet.python_oldort else [])
    assert [x["host"] for x in summary["devices"]][:len(failed)] == \
        [h for h in hosts if h in failed]
    assert {h for h, s in states.items() if s == "ok"} == {"cam-01", "cam-02", "gw-01"}
    dom, console = dump_dom(out.as_uri())
    assert console == [], console
    assert len(re.findall(r'<circle class="release"', dom)) >= 3 * 3
    png = artifacts_dir() / "fleet-report-loopback.png"
    assert screenshot(out.as_uri(), png, height=1500) == []
    assert png.stat().st_size > 20_000
    print(f"screenshot: {png}")
