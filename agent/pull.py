"""`python3 -m agent pull REGISTRY/REPO:TAG`: fetch a bundle from an OCI registry, then the same
gate as `edgepack push`: stage -> verify -> self-test -> activate, or keep the current release.

Standard library + agent/device.py (the device layout, verification, self-test and activation are
its functions, not copies) + agent/registry.py (the HTTP client). Each bundle file is one layer
whose digest is the file's sha256, and the config blob is manifest.json itself, so the release id
(sha256 of manifest.json) is the config digest: files any release on the device already holds are
linked, not downloaded (device.plan), and every downloaded blob is checked before it is used.
Blobs download into <root>/blobs/ and resume there after a broken pull.

Prints one JSON object with --json (else one line); exit 0 activated or unchanged, 1 failed
(the current release is untouched), 2 bad usage.
"""
import argparse
import json
import os
import socket
import sys
import time

from . import device

oci = None  # agent/registry.py, imported when a pull runs: ssl + http.client cost every other
            # agent command (selftest, facts) 12 ms at start-up


def _load_registry():
    global oci
    if oci is None:
        from . import registry
        oci = registry
    return oci

MAX_CONFIG_BYTES = 16 << 20
MAX_SIGNATURE_BYTES = 64 << 10
CREDENTIALS_NAME = "registry-auth.json"  # default credentials file under <root>


class PullFailed(Exception):
    def __init__(self, step, what):
        Exception.__init__(self, what)
        self.step, self.what = step, what


def _layers(manifest_bytes, ref):
    """(config descriptor, {title: layer}) of an edgepack bundle artifact, or PullFailed."""
    try:
        m = json.loads(manifest_bytes.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise PullFailed("resolve", "%s: the registry's manifest is not JSON" % ref)
    if not isinstance(m, dict) or m.get("schemaVersion") != 2:
        raise PullFailed("resolve", "%s: not an OCI image manifest (schemaVersion 2)" % ref)
    media = m.get("mediaType")
    if media not in (None, oci.MANIFEST_MEDIA_TYPE):
        raise PullFailed("resolve", "%s: manifest media type %s, expected %s (an index or a "
                         "Docker image is not an edgepack bundle)"
                         % (ref, media, oci.MANIFEST_MEDIA_TYPE))
    config = m.get("config") or {}
    if config.get("mediaType") != oci.CONFIG_MEDIA_TYPE:
        raise PullFailed("resolve", "%s is not an edgepack bundle: config media type %r, expected "
                         "%s (publish it with `edgepack publish`)"
                         % (ref, config.get("mediaType"), oci.CONFIG_MEDIA_TYPE))
    layers = {}
    for layer in m.get("layers") or []:
        title = (layer.get("annotations") or {}).get(oci.TITLE)
        if not isinstance(title, str) or not device.safe_relpath(title) or title in layers:
            raise PullFailed("resolve", "%s: layer title %r is missing, unsafe or repeated"
                             % (ref, title))
        if not isinstance(layer.get("size"), int) or not isinstance(layer.get("digest"), str):
            raise PullFailed("resolve", "%s: layer %s has no size or digest" % (ref, title))
        layers[title] = layer
    digest = config.get("digest") or ""
    if not digest.startswith("sha256:") or not isinstance(config.get("size"), int):
        raise PullFailed("resolve", "%s: config has no sha256 digest or size" % ref)
    if config["size"] > MAX_CONFIG_BYTES:
        raise PullFailed("resolve", "%s: config of %d bytes is too large for a manifest.json"
                         % (ref, config["size"]))
    return config, layers


def pull(ref, root=None, plain_http=False, ca_file=None, credentials=None, keep=device.DEFAULT_KEEP,
         selftest_timeout=600.0, require_signature=False, allowed_signers=None, holder=None,
         expect_id=None):
    """The whole pull on this device; returns the result object (never raises for a failed step)."""
    started = time.time()
    _load_registry()
    root = device.resolve_root(root)
    out = {"ok": False, "status": "failed", "step": "resolve", "ref": ref, "root": root,
           "release_id": None, "downloaded_files": 0, "downloaded_bytes": 0, "reused_files": 0}
    try:
        registry, repo, reference = oci.parse_ref(ref)
    except oci.RegistryError as exc:
        out["error"] = exc.what
        out["usage"] = True
        return out
    if credentials is None and os.path.isfile(os.path.join(root, CREDENTIALS_NAME)):
        credentials = os.path.join(root, CREDENTIALS_NAME)
    os.umask(0o022)
    out["current"] = device._link_target_id(root, "current")
    lock, reg = device.Lock(root), None
    try:
        out["step"] = "lock"
        lock.acquire(holder or "edgepack pull by %s@%s pid %d" % (
            os.environ.get("USER", "?"), socket.gethostname(), os.getpid()))
        if expect_id and out["current"] == device._valid_id(expect_id) and os.path.isfile(
                os.path.join(root, "releases", expect_id, "manifest.json")):
            # the host resolved REF to this release and it is current: no registry request at all
            st = device.status(root)
            out.update(ok=True, status="unchanged", step="done", release_id=expect_id,
                       previous=st["previous"], last_report=st["last_report"])
            return out
        out["step"] = "resolve"
        reg = oci.Registry(registry, plain_http, ca_file, credentials)
        body, out["manifest_digest"] = reg.manifest(repo, reference)
        config, layers = _layers(body, ref)
        rid = config["digest"][len("sha256:"):]
        out["release_id"] = rid
        out["step"] = "prepare"
        info = device.prepare(root, rid)
        out["current"], out["previous"] = info.get("current"), info.get("previous")
        if info.get("unchanged"):
            out.update(ok=True, status="unchanged", step="done", last_report=info.get("last_report"))
            return out
        try:
            _stage(reg, repo, root, rid, config, layers, out)
            out["step"] = "verify"
            out["verify"] = device.verify(root, rid, require_signature, allowed_signers)
            out["step"] = "selftest"
            st = device.run_selftest(root, rid, selftest_timeout)
            out["report"], out["report_file"] = st["report"], st["report_file"]
            if not st["passed"]:
                raise PullFailed("selftest", "self-test failed: " + "; ".join(
                    st["report"]["verdict"].get("reasons") or ["failed"]))
            out["step"] = "activate"
            act = device.activate(root, rid, keep)
        except BaseException:
            device.abort(root, rid)
            raise
        out.update(ok=True, status="activated", step="done", current=act["current"],
                   previous=act["previous"], pruned=act.get("pruned"))
        device._rmtree(os.path.join(root, "blobs"))  # nothing left to resume
        return out
    except PullFailed as exc:
        out["error"] = exc.what
        out["step"] = exc.step
    except oci.RegistryError as exc:
        out["error"] = exc.what
        if exc.status is not None:
            out["http_status"] = exc.status
    except device.DeviceError as exc:
        out["error"] = str(exc)
    except OSError as exc:
        out["error"] = "%s: %s" % (type(exc).__name__, exc)
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback; current is untouched
        out["error"] = "unexpected %s: %s" % (type(exc).__name__, exc)
    finally:
        lock.release()
        out["seconds"] = round(time.time() - started, 3)
        out["received_bytes"] = reg.received if reg is not None else 0
    return out


def _stage(reg, repo, root, rid, config, layers, out):
    """manifest.json (the config blob), then the files no release on the device holds."""
    out["step"] = "download"
    stage = os.path.join(root, "stage", rid)
    blobs = os.path.join(root, "blobs")
    device._mkdir(blobs)
    reg.blob(repo, config["digest"], config["size"], os.path.join(stage, "manifest.json"),
             os.path.join(blobs, rid + ".part"))
    plan = device.plan(root, rid)
    out["reused_files"] = plan.get("present", 0) + plan.get("reused", 0)
    files = device._read_json(os.path.join(stage, "manifest.json"))["files"]
    wanted = list(plan["need"])
    if "signature" in layers:
        if layers["signature"]["size"] > MAX_SIGNATURE_BYTES:
            raise PullFailed("download", "signature layer of %d bytes is too large"
                             % layers["signature"]["size"])
        wanted.append("signature")
    for rel in wanted:
        layer = layers.get(rel)
        if layer is None:
            raise PullFailed("download", "the artifact has no layer for %s (published from an "
                             "incomplete bundle?)" % rel)
        meta = files.get(rel)
        if meta is not None and (layer["digest"] != "sha256:%s" % meta.get("sha256")
                                 or layer["size"] != meta.get("size")):
            raise PullFailed("download", "layer %s has digest %s... size %d, manifest.json says "
                             "sha256:%s... size %s" % (rel, layer["digest"][:19], layer["size"],
                                                       str(meta.get("sha256"))[:12],
                                                       meta.get("size")))
        dest = os.path.join(stage, *rel.split("/"))
        device._mkdir(os.path.dirname(dest))
        reg.blob(repo, layer["digest"], layer["size"], dest,
                 os.path.join(blobs, layer["digest"][len("sha256:"):] + ".part"))
        out["downloaded_files"] += 1
        out["downloaded_bytes"] += layer["size"]


def add_arguments(p):
    p.add_argument("ref", help="REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:HEX")
    p.add_argument("--root", default=device.DEFAULT_ROOT, help="edgepack root (default ~/.edgepack)")
    p.add_argument("--plain-http", action="store_true", help="the registry speaks HTTP, not TLS")
    p.add_argument("--ca-file", help="CA certificates to trust for the registry (default: the "
                   "system's)")
    p.add_argument("--credentials", help="Docker-style config.json with the registry's "
                   "credentials (default <root>/%s when present)" % CREDENTIALS_NAME)
    p.add_argument("--keep", type=int, default=device.DEFAULT_KEEP, help="releases to keep")
    p.add_argument("--selftest-timeout", type=float, default=600.0)
    p.add_argument("--require-signature", action="store_true")
    p.add_argument("--allowed-signers", help="allowed_signers file (default <root>/allowed_signers)")
    p.add_argument("--holder", help="who holds the lock (shown to others)")
    p.add_argument("--expect-id", help="release id REF resolves to (sha256 of its manifest.json): "
                   "when it is current already, the registry is not asked")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def cmd_pull(args):
    out = pull(args.ref, args.root, args.plain_http, args.ca_file, args.credentials, args.keep,
               args.selftest_timeout, args.require_signature, args.allowed_signers, args.holder,
               args.expect_id)
    if args.json:
        sys.stdout.write(json.dumps(out, sort_keys=True, default=str) + "\n")
    elif out["ok"]:
        sys.stdout.write("%s %s from %s (%d files, %d bytes downloaded)\n" % (
            out["status"], (out.get("current") or "")[:12], args.ref, out["downloaded_files"],
            out["downloaded_bytes"]))
    else:
        kept = (out.get("current") or "none")[:12]
        sys.stderr.write("edgepack: pull %s failed at %s: %s (current release unchanged: %s)\n"
                         % (args.ref, out["step"], out.get("error"), kept))
    sys.stdout.flush()
    if out["ok"]:
        return 0
    return 2 if out.get("usage") else 1


def register(subparsers):
    p = subparsers.add_parser("pull", help="fetch a bundle from an OCI registry, verify, "
                              "self-test, activate")
    add_arguments(p)
    p.set_defaults(func=cmd_pull)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="edgepack-pull", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return cmd_pull(parser.parse_args(argv))
