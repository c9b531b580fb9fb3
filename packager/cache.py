"""A content-addressed cache of expensive step outputs (an onnx2tf conversion takes minutes).

    entry = cache.get("onnx2tf", key)             # None: a miss (or the cache is off)
    entry = cache.put("onnx2tf", key, {"converted": path}, meta={...})

The key is the caller's: `cache.key(...)` hashes whatever decides the output (the input graph's
sha256, the tool's version, its options), so a changed input is a new key, never a stale hit.
Location: `$EDGEPACK_CACHE`, else `~/.cache/edgepack`; `EDGEPACK_CACHE=off` turns it off.
An entry is written into a temp folder beside its place and renamed into place (atomic): a reader
sees a whole entry or none, and of two builds that make the same entry at once, the first rename
wins and the second keeps the one already there. Every file's sha256 is in the entry's meta.json and
checked on each hit; a damaged entry is removed and counts as a miss. A cache that cannot be written
(read-only home, full disk) is logged and skipped: caching never fails a build.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

OFF = ("off", "0", "false", "no", "none")
META = "meta.json"


def root() -> Path | None:
    """The cache folder, or None when EDGEPACK_CACHE=off."""
    env = os.environ.get("EDGEPACK_CACHE", "").strip()
    if env.lower() in OFF:
        return None
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgepack"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def key(*parts) -> str:
    """sha256 of the parts as canonical JSON (dicts sorted): the same inputs give the same key."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    path: Path            # the entry's folder: its files and meta.json
    meta: dict

    def file(self, name: str) -> Path:
        return self.path / name


def _place(kind: str, k: str) -> Path | None:
    base = root()
    if base is None:
        return None
    if not k or any(c not in "0123456789abcdef" for c in k) or "/" in kind or kind.startswith("."):
        raise ValueError(f"bad cache key {kind}/{k}")
    return base / kind / k[:2] / k


def get(kind: str, k: str) -> Entry | None:
    place = _place(kind, k)
    if place is None or not (place / META).is_file():
        return None
    try:
        meta = json.loads((place / META).read_text())
        for name, digest in meta.get("files", {}).items():
            if file_digest(place / name) != digest:
                raise ValueError(f"{name} does not match its sha256")
    except (OSError, ValueError) as exc:
        log.warning("cache entry %s is damaged (%s): removed, converting again", place, exc)
        shutil.rmtree(place, ignore_errors=True)
        return None
    return Entry(place, meta)


def put(kind: str, k: str, files: dict[str, Path], meta: dict | None = None) -> Entry | None:
    """Store copies of `files` (name -> path) under the key; the stored entry, or None if the cache
    is off or cannot be written."""
    place = _place(kind, k)
    if place is None:
        return None
    tmp = None
    try:
        place.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=place.parent))
        record = dict(meta or {})
        record["files"] = {}
        for name, src in files.items():
            if "/" in name or name.startswith(".") or name == META:
                raise ValueError(f"bad file name {name!r} for a cache entry")
            shutil.copyfile(src, tmp / name)
            record["files"][name] = file_digest(tmp / name)
        (tmp / META).write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
        try:
            os.rename(tmp, place)
            tmp = None
        except OSError:
            if not (place / META).is_file():   # not a concurrent writer's finished entry
                raise
        return get(kind, k)
    except (OSError, ValueError) as exc:
        log.warning("could not write the cache entry %s (%s): continuing without it", place, exc)
        return None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
