"""The host's look at a published bundle before `push --from`: the manifest and its config
(manifest.json), read with the device's own client (agent/registry.py), so the host can refuse a
device whose profile or signature needs the bundle does not meet before any device is asked, and
pin every device to the same manifest digest even if the tag moves during the rollout."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Optional

from agent import registry as layout
from packager.oci.publish import RegistryError, parse


@dataclass(frozen=True)
class Resolved:
    ref: str  # as the user wrote it
    pinned: str  # REGISTRY/REPO@sha256:... (what each device pulls)
    digest: str
    release_id: str
    manifest: dict  # the bundle's manifest.json
    signed: bool
    layers: int
    size: int  # bytes of all layers

    @property
    def profile(self) -> Optional[str]:
        p = self.manifest.get("profile")
        return p.get("name") if isinstance(p, dict) else p

    def summary(self) -> dict:
        m = self.manifest
        return {"path": self.ref, "ref": self.pinned, "id": self.release_id, "name": m.get("name"),
                "version": m.get("version"), "profile": self.profile, "runtime": m.get("runtime"),
                "signed": self.signed}


def resolve(ref: str, plain_http: bool = False, ca_file: Optional[str] = None,
            credentials: Optional[str] = None) -> Resolved:
    registry, repo, reference = parse(ref)
    default = os.path.join(os.environ.get("DOCKER_CONFIG", os.path.expanduser("~/.docker")),
                           "config.json")
    creds = credentials or (default if os.path.isfile(default) else None)
    try:
        reg = layout.Registry(registry, plain_http, ca_file, creds)
        body, digest = reg.manifest(repo, reference)
        m = json.loads(body.decode("utf-8"))
        config = m.get("config") or {}
        if config.get("mediaType") != layout.CONFIG_MEDIA_TYPE:
            raise RegistryError(f"{ref} is not an edgepack bundle (config media type "
                                f"{config.get('mediaType')!r})",
                                hint="publish it with `edgepack publish BUNDLE REF`")
        with tempfile.TemporaryDirectory(prefix="edgepack-resolve-") as tmp:
            dest = os.path.join(tmp, "manifest.json")
            reg.blob(repo, config.get("digest"), int(config.get("size") or 0), dest, dest + ".part")
            with open(dest, "rb") as f:
                manifest = json.loads(f.read().decode("utf-8"))
    except layout.RegistryError as exc:
        raise RegistryError(exc.what, hint="check the reference, the credentials (--credentials) "
                                           "and --plain-http / --ca-file")
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{ref}: the registry's manifest or config is not JSON ({exc})")
    layers = m.get("layers") or []
    titles = {(x.get("annotations") or {}).get(layout.TITLE) for x in layers}
    return Resolved(ref, f"{registry}/{repo}@{digest}", digest, config["digest"].split(":", 1)[1],
                    manifest, "signature" in titles, len(layers),
                    sum(int(x.get("size") or 0) for x in layers))
