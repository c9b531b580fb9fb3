"""The issue-12 benches run in smoke mode (2 devices, a tiny bundle) and write well-formed results.
No speed is asserted: the numbers live in docs/BENCHMARKS.md."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import common  # noqa: E402
from fleet_harness import _skip_reason  # noqa: E402
from registry_harness import skip_reason  # noqa: E402


def _run(name, out, *extra):
    p = subprocess.run([sys.executable, "-m", f"bench.{name}", "--smoke", "--out", str(out), *extra],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    data = json.loads(out.read_text())
    assert common.check_result(data) == [] and data["commands"]
    return data


def test_oci_layout_smoke(tmp_path):
    if skip_reason():
        pytest.skip(skip_reason())
    data = _run("oci_layout", tmp_path / "layout.json")
    rows = {r["metric"]: r for r in data["rows"]}
    update = rows["update download (only the manifest changed): per-file vs tar"]
    assert update["edgepack"]["median"] < update["peer"]["median"]  # only manifest.json moves


@pytest.mark.slow
def test_scale_smoke(tmp_path):
    if _skip_reason() or skip_reason():
        pytest.skip(_skip_reason() or skip_reason())
    data = _run("scale", tmp_path / "scale.json", "--kinds", "push,pull,pool")
    metrics = {r["metric"] for r in data["rows"]}
    assert "unchanged re-push wall: edgepack push vs pool" in metrics
    assert any("push --from" in m for m in metrics)
    assert all(r["extra"].get("all_ok", True) for r in data["rows"])
