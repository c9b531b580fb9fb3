"""Read and verify a bundle's manifest.json and the files it lists (stdlib only).

Path safety and per-file hashing are device.py's (safe_relpath, check_files, sha256_file): that
file must run alone on a device, so the rest of the agent imports them rather than keep copies.
"""
import json
import os

from . import SCHEMA_VERSION
from .device import check_files, safe_relpath, sha256_file  # noqa: F401 (sha256_file: public here too)

MANIFEST = "manifest.json"
SIGNATURE = "signature"
REQUIRED_KEYS = ("schema_version", "name", "version", "profile", "format", "precision",
                 "runtime", "model", "inputs", "outputs", "files")


class BundleUnusable(Exception):
    """The bundle cannot be used at all (exit code 2)."""


def release_id(bundle_dir):
    """A bundle's id: the sha256 of its manifest.json bytes."""
    return sha256_file(os.path.join(bundle_dir, MANIFEST))


def load(bundle_dir):
    """Parse and structurally check manifest.json; raise BundleUnusable with a fix."""
    path = os.path.join(bundle_dir, MANIFEST)
    if not os.path.isdir(bundle_dir):
        raise BundleUnusable("bundle %r is not a folder (fix: pass the bundle folder, "
                             "or extract the .tar.gz first)" % bundle_dir)
    if not os.path.isfile(path):
        raise BundleUnusable("no manifest.json in %r: not an edgepack bundle "
                             "(fix: rebuild it with `edgepack build`)" % bundle_dir)
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleUnusable("manifest.json in %r is not valid JSON (%s) "
                             "(fix: rebuild the bundle)" % (bundle_dir, exc))
    if not isinstance(manifest, dict):
        raise BundleUnusable("manifest.json in %r is not a JSON object (fix: rebuild the bundle)"
                             % bundle_dir)
    version = manifest.get("schema_version")
    if not isinstance(version, int):
        raise BundleUnusable("manifest.json has no integer schema_version (fix: rebuild the bundle)")
    if version > SCHEMA_VERSION:
        raise BundleUnusable("manifest schema %d is newer than this agent understands (%d) "
                             "(fix: rebuild with the edgepack that reads it, or use the agent "
                             "shipped inside the bundle)" % (version, SCHEMA_VERSION))
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleUnusable("manifest.json lacks %s (fix: rebuild the bundle)" % ", ".join(missing))
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise BundleUnusable("manifest.json lists no files (fix: rebuild the bundle)")
    for rel, meta in files.items():
        if not safe_relpath(rel):
            raise BundleUnusable("manifest.json lists an unsafe path %r (fix: rebuild the bundle)"
                                 % rel)
        if not (isinstance(meta, dict) and isinstance(meta.get("sha256"), str)
                and isinstance(meta.get("size"), int)):
            raise BundleUnusable("manifest.json: the entry for %r is not {sha256, size} "
                                 "(fix: rebuild the bundle)" % rel)
    model = manifest["model"]
    if not (isinstance(model, dict) and model.get("path") in files):
        raise BundleUnusable("manifest.json: model.path is not one of the listed files "
                             "(fix: rebuild the bundle)")
    return manifest


def verify_files(bundle_dir, manifest):
    """Check the size and sha256 of every listed file. Returns a result dict (never raises)."""
    problems, checked = check_files(bundle_dir, manifest["files"])
    return {"passed": not problems, "files_checked": checked,
            "files_listed": len(manifest["files"]), "problems": problems}
