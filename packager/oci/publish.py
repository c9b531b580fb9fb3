"""`edgepack publish`: a verified bundle -> an OCI artifact, through oras-py's registry client
(auth, TLS, blob existence checks, uploads). We only write the manifest: oras-py's own `push`
names layers by basename, and a bundle has nested paths (agent/runtimes/ort.py)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Optional

from agent import registry as layout
from packager.errors import EdgepackError, UsageError, short

log = logging.getLogger(__name__)


class RegistryError(EdgepackError):
    """The registry refused or could not be reached: nothing on the devices changes."""


@dataclass
class PublishResult:
    ref: str
    digest: str  # of the OCI manifest: pin a rollout with REGISTRY/REPO@DIGEST
    release_id: str
    layers: int
    uploaded: int = 0  # blobs sent (the rest the registry already had)
    uploaded_bytes: int = 0
    existing: int = 0
    seconds: float = 0.0
    annotations: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"ref": self.ref, "digest": self.digest, "pinned_ref": f"{self.repo_ref}@{self.digest}",
                "release_id": self.release_id, "layers": self.layers, "uploaded": self.uploaded,
                "uploaded_bytes": self.uploaded_bytes, "existing": self.existing,
                "seconds": round(self.seconds, 3), "annotations": self.annotations}

    @property
    def repo_ref(self) -> str:
        registry, repo, _ = layout.parse_ref(self.ref)
        return f"{registry}/{repo}"


def parse(ref: str):
    try:
        return layout.parse_ref(ref)
    except layout.RegistryError as exc:
        raise UsageError(exc.what, hint="e.g. edgepack publish dist/BUNDLE "
                                        "registry.example.com:5000/cams/detector:v3")


def credentials_for(registry: str, path: Optional[str]):
    """(user, password, token) from a Docker-style config.json (default ~/.docker/config.json)."""
    path = path or os.path.join(os.environ.get("DOCKER_CONFIG", os.path.expanduser("~/.docker")),
                                "config.json")
    if not os.path.isfile(path):
        return None, None, None
    try:
        return layout.load_credentials(path, registry)
    except layout.RegistryError as exc:
        raise UsageError(exc.what, hint="write it as {\"auths\": {\"HOST:PORT\": {\"auth\": "
                                        "base64(user:password)}}}")


def client(registry: str, plain_http: bool, ca_file: Optional[str], credentials: Optional[str],
           repo: Optional[str] = None):
    """An oras-py Registry for `registry`, with the auth backend the registry asks for."""
    import oras.provider
    import requests

    verify = ca_file or True
    scheme = "http" if plain_http else "https"
    try:
        probe = requests.get(f"{scheme}://{registry}/v2/", timeout=30, verify=verify)
    except requests.exceptions.SSLError as exc:
        raise RegistryError(f"TLS with registry {registry} failed: {short(exc, 200)}",
                            hint="pass its CA with --ca-file, or --plain-http for a registry "
                                 "without TLS")
    except requests.exceptions.RequestException as exc:
        raise RegistryError(f"cannot reach registry {registry}: {short(exc, 200)}",
                            hint="check the address and port; --plain-http for a registry "
                                 "without TLS")
    challenge = probe.headers.get("WWW-Authenticate", "")
    backend = "basic" if challenge.lower().startswith("basic") else "token"
    reg = oras.provider.Registry(hostname=registry, insecure=plain_http, tls_verify=verify,
                                 auth_backend=backend)
    user, password, token = credentials_for(registry, credentials)
    if token:
        reg.auth.set_token_auth(token)
    elif user is not None:
        reg.auth.set_basic_auth(user, password or "")
        if backend == "token" and challenge.lower().startswith("bearer") and repo:
            # Ask once for a pull,push token (as the oras CLI does for a push): oras-py keeps its
            # first token, and the first request of a push is a HEAD that would get `pull` only.
            import oras.auth.utils as auth_utils

            h = auth_utils.parse_auth_header(challenge)
            h.scope = f"repository:{repo}:pull,push"
            got = reg.auth.request_token(h)
            if got:
                reg.auth.set_token_auth(got)
    elif probe.status_code == 401 and backend == "basic":
        raise RegistryError(f"registry {registry} wants a user name and password and there are "
                            "none for it", hint="pass --credentials FILE (Docker config.json "
                                                "format) or add it to ~/.docker/config.json")
    return reg


def publish(bundle_path: str, ref: str, plain_http: bool = False, ca_file: Optional[str] = None,
            credentials: Optional[str] = None) -> PublishResult:
    """Upload every file of the (verified) bundle as a layer, manifest.json as the config, then
    the manifest under the tag. Blobs the registry already has are not sent again."""
    from packager.fleet.bundles import open_bundle

    registry, repo, reference = parse(ref)
    if reference.startswith("sha256:"):
        raise UsageError(f"publish needs a tag, not a digest: {ref}", hint="e.g. REPO:v3")
    started = time.monotonic()
    bundle = open_bundle(bundle_path)
    try:
        reg = client(registry, plain_http, ca_file, credentials, repo)
        container = reg.get_container(f"{registry}/{repo}:{reference}")
        rels = sorted(bundle.manifest["files"]) + (["signature"] if bundle.signed else [])
        layers = []
        for rel in rels:
            meta = bundle.manifest["files"].get(rel)
            if meta is None:  # the signature: not in the manifest (it signs the manifest)
                data = _read(bundle.file(rel))
                meta = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            layers.append({"mediaType": layout.media_type_of(rel), "digest": "sha256:" + meta["sha256"],
                           "size": meta["size"], "annotations": {layout.TITLE: rel}})
        config = {"mediaType": layout.CONFIG_MEDIA_TYPE, "digest": "sha256:" + bundle.release_id,
                  "size": os.path.getsize(bundle.file("manifest.json"))}
        res = PublishResult(ref, "", bundle.release_id, len(layers))
        for rel, desc in list(zip(rels, layers)) + [("manifest.json", config)]:
            _upload(reg, container, bundle.file(rel), desc, res)
        m = bundle.manifest
        res.annotations = {k: v for k, v in {
            "org.opencontainers.image.title": m.get("name"),
            "org.opencontainers.image.version": m.get("version"),
            "org.opencontainers.image.created": m.get("created"),
            layout.RELEASE_ANNOTATION: bundle.release_id,
            "dev.edgepack.profile": bundle.profile, "dev.edgepack.format": m.get("format"),
            "dev.edgepack.runtime": m.get("runtime"),
            "dev.edgepack.signed": "true" if bundle.signed else "false"}.items() if v}
        manifest = {"schemaVersion": 2, "mediaType": layout.MANIFEST_MEDIA_TYPE,
                    "artifactType": layout.ARTIFACT_TYPE, "config": config, "layers": layers,
                    "annotations": res.annotations}
        resp = _call(reg.upload_manifest, manifest, container, what="manifest")
        # requests sends json= as json.dumps(manifest): its digest, if the registry does not say
        res.digest = resp.headers.get("Docker-Content-Digest") or \
            "sha256:" + hashlib.sha256(json.dumps(manifest).encode()).hexdigest()
        res.seconds = time.monotonic() - started
        log.info("published %s (%d layers, %d uploaded, %d already there)", ref, res.layers,
                 res.uploaded, res.existing)
        return res
    finally:
        bundle.cleanup()


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _upload(reg, container, path: str, desc: dict, res: PublishResult) -> None:
    if _call(reg.blob_exists, desc, container, what=f"blob {desc['digest'][:19]}"):
        res.existing += 1
        return
    _call(reg.upload_blob, path, container, desc, what=f"blob {desc['digest'][:19]}")
    res.uploaded += 1
    res.uploaded_bytes += desc["size"]


def _call(fn, *args, what: str):
    """One oras-py call; its exceptions (requests, ValueError on a refused request) -> one line."""
    import requests

    try:
        resp = fn(*args)
    except requests.exceptions.SSLError as exc:
        raise RegistryError(f"TLS failed while sending the {what}: {short(exc, 200)}",
                            hint="pass the registry's CA with --ca-file")
    except requests.exceptions.RequestException as exc:
        raise RegistryError(f"sending the {what} failed: {short(exc, 200)}",
                            hint="check the registry and retry (blobs already sent are kept)")
    except ValueError as exc:
        raise RegistryError(f"the registry refused the {what}: {short(exc, 200)}",
                            hint="check the credentials and that they may push to this repository")
    if isinstance(resp, bool):
        return resp
    if resp.status_code not in (200, 201, 202):
        detail = ""
        try:
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}"
                               for e in (resp.json().get("errors") or [])[:2])
        except ValueError:
            pass
        hint = {401: "check the credentials (--credentials FILE)",
                403: "these credentials may not push to this repository"}.get(
            resp.status_code, "check the registry's log")
        raise RegistryError(f"the registry refused the {what}: HTTP {resp.status_code}"
                            + (f" ({detail})" if detail else ""), hint=hint)
    return resp
