"""Opening a bundle for a push."""
from __future__ import annotations

import os
import tarfile

from packager.fleet import open_bundle


def test_push_extracts_archives_with_the_data_filter(tmp_path, bundles, monkeypatch):
    """The fleet path (open_bundle) goes through the same safe extraction as selftest."""
    from packager.bundle import make_archive

    arc = make_archive(bundles("mlp", "x86-cpu"), tmp_path / "b.tar.gz")
    seen = []
    real = tarfile.TarFile.extractall

    def spy(self, path=".", members=None, *, numeric_owner=False, filter=None):
        seen.append(filter)
        return real(self, path, members, numeric_owner=numeric_owner, filter=filter)
    monkeypatch.setattr(tarfile.TarFile, "extractall", spy)
    b = open_bundle(str(arc))
    try:
        assert seen == ["data"] and b.manifest["name"] == "mlp"
    finally:
        b.cleanup()
    assert not os.path.exists(b.tmpdir)
