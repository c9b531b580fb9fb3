"""packager/cache.py: content-addressed entries, atomic and safe under concurrent writers, off by env."""
from __future__ import annotations

import os
import threading

import pytest

from packager import cache


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _file(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_key_is_stable_and_changes_with_any_part():
    k = cache.key("onnx2tf", "abc", {"b": 1, "a": [1, 2]})
    assert k == cache.key("onnx2tf", "abc", {"a": [1, 2], "b": 1})
    assert k != cache.key("onnx2tf", "abd", {"a": [1, 2], "b": 1})
    assert k != cache.key("onnx2tf", "abc", {"a": [1, 2], "b": 2})
    assert len(k) == 64


def test_put_then_get(tmp_path, root):
    k = cache.key("x")
    assert cache.get("tool", k) is None
    entry = cache.put("tool", k, {"model.bin": _file(tmp_path, "m", b"weights")}, {"info": {"seconds": 3}})
    assert entry is not None and entry.path.is_relative_to(root)
    got = cache.get("tool", k)
    assert got.file("model.bin").read_bytes() == b"weights" and got.meta["info"] == {"seconds": 3}
    assert not [p for p in entry.path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_off_means_no_reads_and_no_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPACK_CACHE", "off")
    assert cache.root() is None
    k = cache.key("x")
    assert cache.put("tool", k, {"m": _file(tmp_path, "m", b"1")}) is None and cache.get("tool", k) is None


def test_default_location_is_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGEPACK_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.root() == tmp_path / ".cache" / "edgepack"


def test_a_damaged_entry_is_a_miss_and_is_removed(tmp_path, root):
    k = cache.key("y")
    entry = cache.put("tool", k, {"m": _file(tmp_path, "m", b"good")})
    entry.file("m").write_bytes(b"bad!")
    assert cache.get("tool", k) is None
    assert not entry.path.exists()


def test_concurrent_writers_leave_one_whole_entry(tmp_path, root):
    k = cache.key("z")
    files = [_file(tmp_path, f"m{i}", b"same bytes") for i in range(6)]
    start = threading.Barrier(len(files))
    results = []

    def write(p):
        start.wait()
        results.append(cache.put("tool", k, {"m": p}))

    threads = [threading.Thread(target=write, args=(p,)) for p in files]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert all(r is not None and r.file("m").read_bytes() == b"same bytes" for r in results)
    place = cache.get("tool", k).path
    assert sorted(os.listdir(place.parent)) == [place.name]     # no temp folders left behind


def test_an_unwritable_cache_never_fails_the_caller(tmp_path, monkeypatch, caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="packager.cache")   # whatever an earlier CLI test set
    blocker = _file(tmp_path, "not-a-dir", b"")
    monkeypatch.setenv("EDGEPACK_CACHE", str(blocker))
    assert cache.put("tool", cache.key("w"), {"m": _file(tmp_path, "m", b"1")}) is None
    assert "could not write the cache entry" in caplog.text
