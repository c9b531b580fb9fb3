"""publish (oras-py) and the device's pull (agent/pull.py, stdlib) against real docker-registry
servers on 127.0.0.1: the artifact layout, layer dedup, the gate on the device, TLS, basic and
token auth, resumable downloads, and bad registry answers that leave the current release alone."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import registry as layout
from fleet_harness import rid, run_cli
from registry_harness import CuttingProxy

REPO = Path(__file__).resolve().parents[2]


def pull(ref, root, *extra):
    """`python3 -m agent pull` on this machine, as a device runs it."""
    p = subprocess.run([sys.executable, "-B", "-m", "agent", "pull", ref, "--root", str(root),
                        "--json", *[str(x) for x in extra]], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert p.stdout.strip(), p.stderr[-2000:]
    return p.returncode, json.loads(p.stdout.strip().splitlines()[-1]), p


def current(root: Path):
    link = root / "current"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def publish(bundle, ref, *extra):
    r = run_cli("publish", bundle, ref, "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_refs_parse_and_bad_ones_are_one_line():
    assert layout.parse_ref("127.0.0.1:5000/cams/det:v3") == ("127.0.0.1:5000", "cams/det", "v3")
    assert layout.parse_ref("reg.example.com/a/b/c@sha256:" + "a" * 64)[2] == "sha256:" + "a" * 64
    assert layout.parse_ref("localhost:5000/x")[2] == "latest"
    for bad in ("nohost", "r:5000/Upper:v1", "r/x:bad tag", "r/x@sha256:zz", "r/x:" + "a" * 200):
        with pytest.raises(layout.RegistryError):
            layout.parse_ref(bad)
    r = run_cli("publish", "nowhere", "r/UPPER:v1")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_publish_layout_one_layer_per_file_and_dedup(registry, oci_bundles):
    v1, v2 = oci_bundles["v1"], oci_bundles["v2"]
    ref = f"{registry.host}/cams/tiny:v1"
    out = publish(v1, ref, "--plain-http")
    files = json.loads((v1 / "manifest.json").read_text())["files"]
    assert out["release_id"] == rid(v1) and out["layers"] == len(files)
    reg = layout.Registry(registry.host, plain_http=True)
    body, digest = reg.manifest("cams/tiny", "v1")
    assert digest == out["digest"]
    m = json.loads(body)
    assert m["artifactType"] == layout.ARTIFACT_TYPE
    assert m["config"] == {"mediaType": layout.CONFIG_MEDIA_TYPE, "digest": "sha256:" + rid(v1),
                           "size": (v1 / "manifest.json").stat().st_size}
    by_title = {x["annotations"][layout.TITLE]: x for x in m["layers"]}
    assert set(by_title) == set(files)
    for rel, meta in files.items():
        assert by_title[rel]["digest"] == "sha256:" + meta["sha256"]
        assert by_title[rel]["mediaType"] == layout.media_type_of(rel)
    assert m["annotations"][layout.RELEASE_ANNOTATION] == rid(v1)
    # v2 has the same files: only its manifest.json (the config) is new on the registry
    out2 = publish(v2, f"{registry.host}/cams/tiny:v2", "--plain-http")
    assert out2["uploaded"] == 1 and out2["existing"] == len(files)


def test_pull_gate_unchanged_and_reuse(registry, oci_bundles, tmp_path):
    v1, v2, failing = oci_bundles["v1"], oci_bundles["v2"], oci_bundles["failing"]
    for name, b in (("v1", v1), ("v2", v2), ("failing", failing)):
        publish(b, f"{registry.host}/gate/tiny:{name}", "--plain-http")
    root = tmp_path / "dev"
    code, out, _ = pull(f"{registry.host}/gate/tiny:v1", root, "--plain-http")
    assert code == 0 and out["status"] == "activated" and current(root) == rid(v1)
    assert out["downloaded_files"] == len(json.loads((v1 / "manifest.json").read_text())["files"])
    assert list((root / "reports").glob(f"*-{rid(v1)}.json")) and not (root / "blobs").exists()
    code, out, _ = pull(f"{registry.host}/gate/tiny:v1", root, "--plain-http")
    assert code == 0 and out["status"] == "unchanged" and out["downloaded_files"] == 0
    # --expect-id (what push --from passes): current already -> the registry is not even asked
    code, out, _ = pull("127.0.0.1:1/gate/tiny:v1", root, "--plain-http", "--expect-id", rid(v1))
    assert code == 0 and out["status"] == "unchanged" and out["received_bytes"] == 0
    code, out, _ = pull("127.0.0.1:1/gate/tiny:v1", root, "--plain-http", "--expect-id", "0" * 64)
    assert code == 1 and "cannot reach registry" in out["error"] and current(root) == rid(v1)
    code, out, _ = pull(f"{registry.host}/gate/tiny:v2", root, "--plain-http")  # files linked
    assert code == 0 and out["downloaded_files"] == 0 and out["reused_files"] > 0
    assert current(root) == rid(v2) and os.readlink(root / "previous").endswith(rid(v1))
    code, out, p = pull(f"{registry.host}/gate/tiny:failing", root, "--plain-http")
    assert code == 1 and out["step"] == "selftest" and "budget" in out["error"]
    assert current(root) == rid(v2) and not list((root / "stage").iterdir())
    assert out["report"]["verdict"]["passed"] is False


def test_bad_registry_answers_leave_the_current_release(registry, tls_registry, oci_bundles, tmp_path):
    v1, big = oci_bundles["v1"], oci_bundles["big"]
    publish(v1, f"{registry.host}/bad/tiny:v1", "--plain-http")
    root = tmp_path / "dev"
    assert pull(f"{registry.host}/bad/tiny:v1", root, "--plain-http")[0] == 0
    before = current(root)

    def refused(ref, *extra, step=None, words=()):
        code, out, p = pull(ref, root, *extra)
        assert code == 1 and not out["ok"], out
        assert current(root) == before and not list((root / "stage").iterdir())
        assert step is None or out["step"] == step, out
        for w in words:
            assert w in out["error"], out["error"]
        text = subprocess.run([sys.executable, "-B", "-m", "agent", "pull", ref, "--root", str(root),
                               *extra], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert text.returncode == 1 and text.stderr.count("\n") == 1 and "unchanged" in text.stderr
        return out

    refused(f"{registry.host}/bad/tiny:nope", "--plain-http", step="resolve", words=("404",))
    refused(f"{registry.host}/bad/tiny:v1", step="resolve", words=("TLS",))  # TLS is the default
    # TLS + basic auth: no CA, no credentials, a wrong password
    publish(big, f"{tls_registry.host}/bad/big:v1", "--ca-file", tls_registry.certs["ca"],
            "--credentials", tls_registry.credentials(tmp_path / "ci.json", "ci"))
    tref = f"{tls_registry.host}/bad/big:v1"
    refused(tref, step="resolve", words=("not trusted", "--ca-file"))
    refused(tref, "--ca-file", tls_registry.certs["ca"], words=("user name and password",))
    wrong = tls_registry.credentials(tmp_path / "wrong.json", "fleet", "nope")
    refused(tref, "--ca-file", tls_registry.certs["ca"], "--credentials", wrong, words=("401",))
    good = tls_registry.credentials(tmp_path / "fleet.json", "fleet")
    # damaged blobs on the registry: same length other bytes, then cut short
    m = json.loads((big / "manifest.json").read_text())["files"]["model/blob.bin"]
    blob = tls_registry.blob_file("sha256:" + m["sha256"])
    original = blob.read_bytes()
    try:
        blob.write_bytes(b"\0" * len(original))
        refused(tref, "--ca-file", tls_registry.certs["ca"], "--credentials", good,
                step="download", words=("does not match its digest",))
        blob.write_bytes(original[: len(original) // 3])
        refused(tref, "--ca-file", tls_registry.certs["ca"], "--credentials", good,
                step="download", words=("manifest says",))
    finally:
        blob.write_bytes(original)
    code, out, _ = pull(tref, root, "--ca-file", tls_registry.certs["ca"], "--credentials", good)
    assert code == 0 and out["status"] == "activated" and current(root) == rid(big)


def test_a_download_cut_mid_blob_resumes_where_it_stopped(registry, oci_bundles, tmp_path):
    big = oci_bundles["big"]
    publish(big, f"{registry.host}/resume/big:v1", "--plain-http")
    size = json.loads((big / "manifest.json").read_text())["files"]["model/blob.bin"]["size"]
    proxy = CuttingProxy(registry.port, after=size // 2, cuts=1)
    try:
        root = tmp_path / "dev"
        code, out, _ = pull(f"127.0.0.1:{proxy.port}/resume/big:v1", root, "--plain-http")
    finally:
        proxy.stop()
    assert proxy.cut == 1 and code == 0 and out["status"] == "activated", out
    total = sum(meta["size"] for meta in json.loads((big / "manifest.json").read_text())["files"].values())
    # what was cut is fetched with a Range request, not again from the start
    assert out["received_bytes"] < total + size // 3, (out["received_bytes"], total)


def test_token_auth(token_registry, oci_bundles, tmp_path):
    creds = token_registry.credentials(tmp_path / "fleet.json", "fleet")
    ca = token_registry.certs["ca"]
    publish(oci_bundles["v1"], f"{token_registry.host}/tok/tiny:v1", "--ca-file", ca,
            "--credentials", token_registry.credentials(tmp_path / "ci.json", "ci"))
    issued = token_registry.token.issued
    root = tmp_path / "dev"
    code, out, _ = pull(f"{token_registry.host}/tok/tiny:v1", root, "--ca-file", ca)
    assert code == 1 and "token service" in out["error"] and current(root) is None
    code, out, _ = pull(f"{token_registry.host}/tok/tiny:v1", root, "--ca-file", ca,
                        "--credentials", creds)
    assert code == 0 and out["status"] == "activated", out
    assert token_registry.token.issued > issued


@pytest.mark.slow
def test_push_from_a_registry_ends_where_push_ends(pull_fleet, registry, oci_bundles, tmp_path):
    """`push --from`: the host sends commands only; each device pulls, and the fleet ends on the
    releases `edgepack push` leaves it on (a device lacking the runtime keeps its release)."""
    import yaml

    from fleet_harness import current_of

    fleet = pull_fleet
    v1, v2, failing = oci_bundles["v1"], oci_bundles["v2"], oci_bundles["failing"]
    for name, b in (("v1", v1), ("v2", v2), ("failing", failing)):
        publish(b, f"{registry.host}/fleet/tiny:{name}", "--plain-http")
    last = fleet.devices[-1].name

    def inv(root, nort=False):
        hosts = {d.name: d.vars(edgepack_root=root) for d in fleet.devices}
        if nort:
            hosts[last]["ansible_python_interpreter"] = fleet.python_nort
        path = tmp_path / f"inv-{root.strip('~/')}-{int(nort)}.yaml"
        path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
        return path

    def run(what, root, *extra, nort=False):
        args = (["--from", f"{registry.host}/fleet/tiny:{what}", "--plain-http"]
                if root.endswith("pull") else [str(oci_bundles[what])])
        r = run_cli("push", *args, "-i", inv(root, nort), "--known-hosts", fleet.known_hosts,
                    "--reports", tmp_path / "reports", "--json", *extra)
        return r.returncode, json.loads(r.stdout), r

    def state(root):
        return {d.name: (current_of(d, root), current_of_prev(d, root)) for d in fleet.devices}

    def current_of_prev(d, root):
        link = d.path(root) / "previous"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    for root in ("~/ep-o-push", "~/ep-o-pull"):
        code, out, r = run("v1", root)
        assert code == 0, r.stderr
    pulled = out
    assert {d["status"] for d in pulled["devices"]} == {"activated"}
    assert all(d["uploaded_bytes"] == 0 and d["detail"]["downloaded_files"] > 0 for d in pulled["devices"])
    assert all(Path(d["report_file"]).is_file() for d in pulled["devices"])
    assert pulled["bundle"]["ref"].startswith(f"{registry.host}/fleet/tiny@sha256:")
    assert state("~/ep-o-pull") == state("~/ep-o-push")

    for root in ("~/ep-o-push", "~/ep-o-pull"):
        code, out, _ = run("v2", root, nort=True)
        assert code == 3, [d["reason"] for d in out["devices"]]
    assert state("~/ep-o-pull") == state("~/ep-o-push")
    assert state("~/ep-o-pull")[last] == (rid(v1), None)

    for root in ("~/ep-o-push", "~/ep-o-pull"):  # a failing canary: nobody else is touched
        code, out, _ = run("failing", root, "--canary", "1")
        assert code == 1 and [d["status"] for d in out["devices"]][1:] == ["skipped"] * 3
    assert state("~/ep-o-pull") == state("~/ep-o-push")

    code, out, _ = run("v2", "~/ep-o-pull")
    assert code == 0 and [d["status"] for d in out["devices"]] == ["unchanged"] * 3 + ["activated"]
    r = run_cli("push", "--from", f"{registry.host}/fleet/tiny:nope", "--plain-http", "-i",
                inv("~/ep-o-pull"), "--known-hosts", fleet.known_hosts)
    assert r.returncode == 2 and "404" in r.stderr and r.stderr.count("\n") == 1
    assert state("~/ep-o-pull")[last] == (rid(v2), rid(v1))


def test_signature_travels_as_a_layer_and_the_device_checks_it(registry, oci_bundles, tmp_path):
    from fleet_harness import build_bundle
    from packager import signing

    keys = signing.keygen(str(tmp_path / "keys" / "ep"))
    signed = build_bundle(tmp_path / "src", tmp_path / "dist", "--sign-key", keys["private_key"], seed=3)
    out = publish(signed, f"{registry.host}/sig/tiny:v1", "--plain-http")
    assert out["annotations"]["dev.edgepack.signed"] == "true"
    publish(oci_bundles["v1"], f"{registry.host}/sig/tiny:unsigned", "--plain-http")
    root = tmp_path / "dev"
    allowed = keys["allowed_signers"]
    code, out, _ = pull(f"{registry.host}/sig/tiny:unsigned", root, "--plain-http",
                        "--require-signature", "--allowed-signers", allowed)
    assert code == 1 and out["step"] == "verify" and "signature" in out["error"] and current(root) is None
    code, out, _ = pull(f"{registry.host}/sig/tiny:v1", root, "--plain-http",
                        "--require-signature", "--allowed-signers", allowed)
    assert code == 0 and out["verify"]["signature"]["verified"] is True and current(root) == rid(signed)


def test_the_pull_runs_on_python_38_over_tls_with_basic_auth(tls_registry, oci_bundles, tmp_path):
    """The device side is stdlib + Python >= 3.8: a real 3.8 (without numpy) downloads and checks
    every blob over TLS with basic auth; its self-test then finds no numpy and it keeps its release."""
    py38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")
    if not py38.exists():
        pytest.skip("no Python 3.8 here")
    ca = tls_registry.certs["ca"]
    publish(oci_bundles["v2"], f"{tls_registry.host}/py38/tiny:v2", "--ca-file", ca,
            "--credentials", tls_registry.credentials(tmp_path / "ci.json", "ci"))
    root = tmp_path / "dev"
    p = subprocess.run([str(py38), "-B", "-m", "agent", "pull", f"{tls_registry.host}/py38/tiny:v2",
                        "--root", str(root), "--ca-file", str(ca), "--credentials",
                        str(tls_registry.credentials(tmp_path / "fleet.json", "fleet")), "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 1 and out["step"] == "selftest" and "numpy" in out["error"], out
    assert out["downloaded_files"] == len(json.loads((oci_bundles["v2"] / "manifest.json").read_text())["files"])
    assert current(root) is None and not list((root / "stage").iterdir())
