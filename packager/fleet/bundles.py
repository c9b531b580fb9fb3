"""The bundle a push sends: a verified folder, or a .tar.gz extracted safely into a temp folder."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from packager.errors import BundleError


@dataclass
class Bundle:
    path: str  # the folder (the extracted one for an archive)
    manifest: dict
    release_id: str  # sha256 of manifest.json: the release's name on the device
    tmpdir: Optional[str] = None
    source: Optional[str] = None  # what the user passed (a folder or a .tar.gz)

    @property
    def profile(self) -> Optional[str]:
        p = self.manifest.get("profile")
        return p.get("name") if isinstance(p, dict) else p

    @property
    def signed(self) -> bool:
        return os.path.isfile(os.path.join(self.path, "signature"))

    def file(self, rel: str) -> str:
        """The local path of a file the manifest names ('model/model.onnx')."""
        return os.path.join(self.path, *rel.split("/"))

    def summary(self) -> dict:
        m = self.manifest
        return {"path": self.source or self.path, "id": self.release_id, "name": m.get("name"),
                "version": m.get("version"), "profile": self.profile, "runtime": m.get("runtime"),
                "signed": self.signed}

    def cleanup(self):
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def open_bundle(path: str) -> Bundle:
    """A verified bundle (folder, or .tar.gz extracted safely). Raises BundleError."""
    from packager import bundle as bundle_mod

    tmpdir = None
    p = Path(path)
    if not p.exists():
        raise BundleError(f"bundle {path} does not exist", hint="pass the folder `edgepack build` "
                                                                "wrote (dist/NAME-VERSION-PROFILE)")
    try:
        if p.is_file():
            tmpdir = tempfile.mkdtemp(prefix="edgepack-push-")
            p = bundle_mod.extract_archive(p, Path(tmpdir))
        manifest = bundle_mod.verify(p)
        rid = bundle_mod.release_id(p)
    except BaseException:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    return Bundle(str(p), manifest, rid, tmpdir, source=str(path))
