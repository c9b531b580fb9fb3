"""Helpers the agent tests import (`from agent_support import ...`): run the agent's self-test,
re-hash an edited bundle, and lay out a bundle by hand for a format the packager cannot build yet."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np

from support import REPO, run_agent

AGENT = REPO / "agent"
PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")
QUICK = ("--runs", "3", "--seconds", "0", "--warmup", "0")


def selftest(b, *extra, python=None):
    """(process, report) of `python -m agent selftest --json .` in bundle b, with a short probe."""
    proc = run_agent(b, "selftest", "--json", ".", *QUICK, *extra, python=python)
    return proc, json.loads(proc.stdout)


def rehash(b, rel):
    """Record a file's new sha256 and size in the manifest after a test changed it."""
    m = json.loads((b / "manifest.json").read_text())
    data = (b / rel).read_bytes()
    m["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (b / "manifest.json").write_text(json.dumps(m))


def file_table(bundle: Path) -> dict:
    """{relative path: {sha256, size}} for every file but manifest.json and signature."""
    table = {}
    for path in sorted(bundle.rglob("*")):
        rel = path.relative_to(bundle).as_posix()
        if path.is_file() and rel not in ("manifest.json", "signature"):
            data = path.read_bytes()
            table[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    return table


def hand_bundle(dest: Path, *, fmt: str, runtime: str, model_files: dict, samples: list[dict],
                reference: list[dict], runtime_settings: dict, thresholds: dict,
                precision: str = "fp32", profile: str = "hand-made") -> Path:
    """A bundle laid out as docs/BUNDLE.md says, without the packager.

    model_files: {name in model/: source path}, the first one is the model; samples / reference:
    one {name: array} per sample (arrays with their batch axis), the inputs and what the
    original model gave for them.
    """
    dest.mkdir(parents=True)
    (dest / "model").mkdir()
    for name, src in model_files.items():
        shutil.copyfile(src, dest / "model" / name)
    shutil.copytree(AGENT, dest / "agent", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    in_names, out_names = list(samples[0]), list(reference[0])
    arrays = {}
    for i, n in enumerate(in_names):
        arrays["i%d" % i] = np.stack([s[n] for s in samples])
    for i, n in enumerate(out_names):
        arrays["o%d" % i] = np.stack([r[n] for r in reference])
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (dest / "vectors.npz").write_bytes(buf.getvalue())

    def specs(example):
        return [{"name": n, "dtype": str(a.dtype), "shape": list(a.shape), "layout": None}
                for n, a in example.items()]

    model_rel = "model/" + next(iter(model_files))
    manifest = {
        "schema_version": 1, "name": "hand", "version": "0", "format": fmt, "precision": precision,
        "profile": {"name": profile}, "runtime": runtime, "runtime_settings": runtime_settings,
        "model": {"path": model_rel, "size": (dest / model_rel).stat().st_size},
        "inputs": specs(samples[0]), "outputs": specs(reference[0]),
        "vectors": {"path": "vectors.npz", "samples": len(samples),
                    "inputs": {n: "i%d" % i for i, n in enumerate(in_names)},
                    "outputs": {n: "o%d" % i for i, n in enumerate(out_names)}},
        "parity": {"thresholds": thresholds, "reference": "original model outputs"},
        "probe": {"warmup_runs": 2, "warmup_seconds": 0, "runs": 5, "seconds": 0, "max_seconds": 10,
                  "budget_ms": None, "budget_metric": "p90"},
        "device": {"arch": [], "min_python": "3.8"},
        "files": file_table(dest),
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return dest
