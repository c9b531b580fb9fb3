"""Issue 12, the artifact layout: one OCI layer per bundle file (what `edgepack publish` writes) vs
one tar layer (what a Docker-image-like layout would do), on a real docker-registry on 127.0.0.1
with the ~20 MB bench bundle: publish wall time, a device's download of a fresh release (blobs
fetched and digest-checked with agent/registry.py, the tar also extracted), and the bytes a
device must download for the next version when only the manifest changed (v2) or the model
changed (v3). Needs docker-registry; no sshd.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from . import common
from .fleet import build_bench_bundle
from .probe import edgepack_cmd


def _tar(bundle: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as t:
        for p in sorted(bundle.rglob("*")):
            if p.is_file():
                t.add(p, arcname=str(p.relative_to(bundle)))
    return out


def _publish_tar(reg_host: str, repo: str, tag: str, tar: Path, manifest: Path) -> float:
    """One tar layer + manifest.json as config, through the same oras-py client."""
    from agent import registry as layout
    from packager.oci.publish import client

    t0 = time.perf_counter()
    reg = client(reg_host, True, None, None, repo)
    container = reg.get_container(f"{reg_host}/{repo}:{tag}")
    digest = hashlib.sha256(tar.read_bytes()).hexdigest()
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + digest,
             "size": tar.stat().st_size, "annotations": {layout.TITLE: "bundle.tar"}}
    if not reg.blob_exists(layer, container):
        reg.upload_blob(str(tar), container, layer)
    cdig = hashlib.sha256(manifest.read_bytes()).hexdigest()
    conf = {"mediaType": layout.CONFIG_MEDIA_TYPE, "digest": "sha256:" + cdig, "size": manifest.stat().st_size}
    if not reg.blob_exists(conf, container):
        reg.upload_blob(str(manifest), container, conf)
    reg.upload_manifest({"schemaVersion": 2, "mediaType": layout.MANIFEST_MEDIA_TYPE, "config": conf,
                         "layers": [layer]}, container)
    return time.perf_counter() - t0


def _download(reg_host: str, repo: str, tag: str, dest: Path, extract: bool) -> tuple[float, int]:
    from agent import registry as layout

    t0 = time.perf_counter()
    reg = layout.Registry(reg_host, plain_http=True)
    body, _ = reg.manifest(repo, tag)
    m = json.loads(body)
    dest.mkdir(parents=True)
    for x in [m["config"]] + m["layers"]:
        name = (x.get("annotations") or {}).get(layout.TITLE, "manifest.json").replace("/", "_")
        reg.blob(repo, x["digest"], x["size"], str(dest / name), str(dest / (name + ".part")))
    if extract:
        with tarfile.open(dest / "bundle.tar") as t:
            t.extractall(dest / "x", filter="data")
    return time.perf_counter() - t0, reg.received


def _layers(reg_host, repo, tag) -> dict:
    from agent import registry as layout
    body, _ = layout.Registry(reg_host, plain_http=True).manifest(repo, tag)
    m = json.loads(body)
    return {x["digest"]: x["size"] for x in [m["config"]] + m["layers"]}


def main(argv=None) -> int:
    a = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    res = common.Result("oci_layout", "OCI layout: one layer per file vs one tar layer", a.smoke)
    sys.path.insert(0, str(common.REPO / "tests" / "oci"))
    sys.path.insert(0, str(common.REPO / "tests" / "fleet"))
    from fleet_harness import derive
    from registry_harness import Registry, skip_reason

    from packager.oci import publish
    reps = a.reps or (1 if a.smoke else 3)
    if skip_reason():
        res.note(f"not measured: {skip_reason()}")
        res.row("layout", "publish", "s", {"median": None}, extra={"skipped": True})
        res.write(a.out)
        return 0
    work = a.work or Path(tempfile.mkdtemp(prefix="edgepack-bench-layout-"))
    reg = Registry(work / "registry").start()
    try:
        v1 = build_bench_bundle(work, a.smoke)
        m = json.loads((v1 / "manifest.json").read_text())
        v2 = derive(v1, work / "v2", manifest={"version": m["version"] + "-v2"})
        model = m["model"]["path"]
        v3 = derive(v1, work / "v3", files={model: (v1 / model).read_bytes()[:-4] + b"\0\0\0\0"},
                    manifest={"version": m["version"] + "-v3"})
        raw = _tar(v1, work / "v1.tar")
        gz = len(gzip.compress(raw.read_bytes(), 6))
        res.note(f"bundle {v1.name}: {len(m['files'])} files, tar {raw.stat().st_size / 1e6:.1f} MB, "
                 f"gzip -6 of it {gz / 1e6:.1f} MB (float weights barely compress)")
        res.command("per-file publish", edgepack_cmd() + ["publish", "BUNDLE", "REG/bench/perfile:vN", "--plain-http"])
        res.command("this bench", [common.PY, "-m", "bench.oci_layout", "--out", "RESULT.json"])
        data = {k: [] for k in ("pub_file", "pub_tar", "dl_file", "dl_tar")}
        for rep in range(reps):
            res.sample_load(f"rep {rep + 1}")
            t0 = time.perf_counter()  # in-process, like the tar publish below (no CLI start-up)
            publish(str(v1), f"{reg.host}/bench/perfile{rep}:v1", plain_http=True)
            data["pub_file"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _publish_tar(reg.host, f"bench/tar{rep}", "v1", raw, v1 / "manifest.json")
            data["pub_tar"].append(time.perf_counter() - t0)
            data["dl_file"].append(_download(reg.host, f"bench/perfile{rep}", "v1", work / f"df{rep}", False)[0])
            data["dl_tar"].append(_download(reg.host, f"bench/tar{rep}", "v1", work / f"dt{rep}", True)[0])
            shutil.rmtree(work / f"df{rep}")
            shutil.rmtree(work / f"dt{rep}")
        res.row("20 MB bundle", "publish wall: per-file layers vs one tar layer", "s", data["pub_file"],
                data["pub_tar"], "one tar layer (oras-py, same client)")
        res.row("20 MB bundle", "fresh download wall: per-file vs tar (+ extract)", "s", data["dl_file"],
                data["dl_tar"], "one tar layer")
        # the next version: bytes a device downloads (per-file: layers it does not hold; tar: all)
        for tag, b, label in (("v2", v2, "only the manifest changed"), ("v3", v3, "the model changed")):
            common.run(edgepack_cmd() + ["publish", b, f"{reg.host}/bench/perfile0:{tag}", "--plain-http"],
                       cwd=common.REPO).check()
            _publish_tar(reg.host, "bench/tar0", tag, _tar(b, work / f"{tag}.tar"), b / "manifest.json")
            old = _layers(reg.host, "bench/perfile0", "v1")
            new = _layers(reg.host, "bench/perfile0", tag)
            per_file = sum(s for d, s in new.items() if d not in old)
            tar_bytes = sum(_layers(reg.host, "bench/tar0", tag).values())
            res.row("20 MB bundle", f"update download ({label}): per-file vs tar", "MB", [per_file / 1e6],
                    [tar_bytes / 1e6], "one tar layer")
    finally:
        reg.stop()
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    res.write(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
