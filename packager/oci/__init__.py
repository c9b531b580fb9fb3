"""Bundles as OCI artifacts: `edgepack publish BUNDLE REGISTRY/REPO:TAG` (publish.py, oras-py) and
what `push --from` needs to read one back on the host (resolve.py, the device's own client).

The layout (docs/SCALE.md) is defined once, in agent/registry.py, so the publisher and the device
agree on it: config = manifest.json (so its digest is the release id), one layer per bundle file
(digest = the file's sha256, title = its path), the signature as one more layer.
"""
from packager.oci.publish import PublishResult, RegistryError, publish
from packager.oci.resolve import Resolved, resolve

__all__ = ["PublishResult", "RegistryError", "Resolved", "publish", "resolve"]
