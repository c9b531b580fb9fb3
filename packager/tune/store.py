"""tune's cache: built candidate bundles and measured runs, keyed by content, so a re-run (or a run
after Ctrl-C) resumes where it stopped. Entries appear atomically (written aside, then renamed)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def default_dir() -> Path:
    base = os.environ.get("EDGEPACK_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edgepack")
    return Path(base) / "tune"


def key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def file_digest(path) -> str | None:
    """sha256 of a file, or of a folder's files; None for a non-file reference (module:factory)."""
    from agent.manifest import sha256_file

    p = Path(path)
    if p.is_file():
        return sha256_file(str(p))
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(p.rglob("*")):
            if f.is_file():
                h.update(f.relative_to(p).as_posix().encode() + sha256_file(str(f)).encode())
        return h.hexdigest()
    return None


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _json(self, path: Path):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _write_json(self, path: Path, data: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True, default=str)
        os.replace(tmp, path)

    # -- builds: <root>/builds/<key>/{build.json, bundle/...}
    def build(self, k: str) -> dict | None:
        entry = self._json(self.root / "builds" / k / "build.json")
        if entry and entry.get("status") == "ok" and not (self.root / "builds" / k / entry["bundle"]).is_dir():
            return None
        return entry

    def bundle_path(self, k: str, entry: dict) -> Path:
        return self.root / "builds" / k / entry["bundle"]

    def save_build(self, k: str, entry: dict, bundle: Path | None) -> dict:
        final = self.root / "builds" / k
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{k}.", dir=final.parent))
        try:
            if bundle is not None:
                shutil.copytree(bundle, tmp / bundle.name)
                entry = {**entry, "bundle": bundle.name}
            (tmp / "build.json").write_text(json.dumps(entry, indent=1, sort_keys=True, default=str))
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return entry

    # -- runs: <root>/runs/<target>/<key>.json
    def run(self, target: str, k: str) -> dict | None:
        return self._json(self.root / "runs" / key(target) / f"{k}.json")

    def save_run(self, target: str, k: str, entry: dict) -> None:
        self._write_json(self.root / "runs" / key(target) / f"{k}.json", entry)
