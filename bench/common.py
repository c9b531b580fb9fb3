"""Shared helpers: running a command with its wall time and peak RSS, statistics, machine facts,
and the result format every bench script writes (read by bench/run.py)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


# Model kinds in bench/models.py (kept here so that bench drivers never import torch: a parent's
# RSS leaks into its children's ru_maxrss through vfork/exec on Linux).
MODELS = {"cnn": "conv net", "transformer": "transformer", "mlp": "MLP"}


def factory(kind: str, smoke: bool) -> str:
    """`edgepack build` SOURCE for a model kind."""
    return f"{REPO / 'bench' / 'models.py'}:{kind}{'_smoke' if smoke else ''}"


def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


class Proc:
    """A finished child: wall seconds, exit code, output, peak RSS (bytes, from wait4)."""

    def __init__(self, cmd, wall, rc, out, err, maxrss):
        self.cmd, self.wall, self.rc, self.out, self.err, self.maxrss = cmd, wall, rc, out, err, maxrss

    def check(self) -> "Proc":
        if self.rc != 0:
            raise RuntimeError(f"command failed (exit {self.rc}): {' '.join(map(str, self.cmd))}\n"
                               f"{self.err[-3000:]}\n{self.out[-1000:]}")
        return self

    def json(self):
        return json.loads(self.out)


def run(cmd, cwd=None, env=None, timeout=900, stdin=None) -> Proc:
    """Run cmd; wall time from start to exit (no RSS: see run_rss)."""
    cmd = [str(c) for c in cmd]
    full_env = dict(os.environ)
    full_env.update(env or {})
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL, text=True)
    try:
        out, err = p.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise RuntimeError(f"timed out after {timeout}s: {' '.join(cmd)}")
    wall = time.perf_counter() - t0
    return Proc(cmd, wall, p.returncode, out, err, None)


def run_rss(cmd, cwd=None, env=None, timeout=900) -> Proc:
    """Like run(), but reaps the child with os.wait4 to get its own peak RSS."""
    cmd = [str(c) for c in cmd]
    full_env = dict(os.environ)
    full_env.update(env or {})
    import tempfile
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=fo, stderr=fe,
                             stdin=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                os.wait4(p.pid, 0)
                raise RuntimeError(f"timed out after {timeout}s: {' '.join(cmd)}")
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        return Proc(cmd, wall, p.returncode, fo.read(), fe.read(), ru.ru_maxrss * 1024)


def summary(values) -> dict:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "values": [], "n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "values": [round(v, 6) for v in vals], "n": len(vals)}


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def versions() -> dict:
    out = {"python": platform.python_version()}
    for n in ("edgepack", "numpy", "onnx", "onnxruntime", "torch", "paramiko", "ai-edge-litert"):
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        have = set(text.split("flags", 1)[1].split("\n", 1)[0].split()) if "flags" in text else set()
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in have)
    except (OSError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "isa": flags,
            "kernel": platform.release(), "os": platform.platform()}


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repetition: checks the script works")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 with --smoke)")
    p.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    return p


class Result:
    """What one bench script found: rows of edgepack-vs-peer measurements, commands, notes."""

    def __init__(self, name: str, title: str, smoke: bool):
        self.data = {"name": name, "title": title, "smoke": smoke, "rows": [], "commands": [],
                     "notes": [], "load": [], "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "versions": versions()}

    def command(self, label: str, cmd) -> None:
        text = cmd if isinstance(cmd, str) else " ".join(str(c) for c in cmd)
        text = text.replace(str(REPO) + "/", "").replace(str(REPO), ".")
        if not any(c["label"] == label for c in self.data["commands"]):
            self.data["commands"].append({"label": label, "command": text})

    def note(self, text: str) -> None:
        self.data["notes"].append(text)

    def sample_load(self, where: str) -> None:
        self.data["load"].append({"where": where, "loadavg": load_avg()})

    def row(self, group: str, metric: str, unit: str, edgepack, peer=None, peer_name: str | None = None,
            goal: str | None = None, met: bool | None = None, ratio_value=None, extra: dict | None = None):
        e = summary(edgepack) if isinstance(edgepack, (list, tuple)) else edgepack
        pr = summary(peer) if isinstance(peer, (list, tuple)) else peer
        if ratio_value is None and pr is not None and e is not None:
            ratio_value = ratio(e.get("median"), pr.get("median"))
        self.data["rows"].append({"group": group, "metric": metric, "unit": unit, "edgepack": e,
                                  "peer": pr, "peer_name": peer_name, "ratio": ratio_value,
                                  "goal": goal, "met": met, "extra": extra or {}})

    def write(self, path: Path) -> None:
        self.data["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.data, indent=2, default=str))


def check_result(data: dict) -> list[str]:
    """Problems with a result file's shape (used by the smoke test and the driver)."""
    problems = []
    for key in ("name", "title", "rows", "commands", "notes", "load"):
        if key not in data:
            problems.append(f"missing key {key}")
    for i, r in enumerate(data.get("rows", [])):
        for key in ("group", "metric", "unit", "edgepack"):
            if key not in r:
                problems.append(f"row {i} lacks {key}")
        e = r.get("edgepack") or {}
        if e.get("median") is None and not (r.get("extra") or {}).get("skipped"):
            problems.append(f"row {i} ({r.get('group')} / {r.get('metric')}) has no edgepack value")
    return problems
