"""Security: no unsafe deserialization on the host, and signing keys never leak."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from badinput import assert_nothing_left, assert_one_line, cli
from support import EXAMPLES, REPO


def test_no_torch_load_without_weights_only_and_no_pickles():
    """torch.load only with weights_only=True; numpy never unpickles; no pickle module at all."""
    offenders = []
    for path in sorted((REPO / "packager").rglob("*.py")) + sorted((REPO / "agent").rglob("*.py")):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 1]
            if "weights_only=True" not in call:
                offenders.append(f"{path.relative_to(REPO)}: {call}")
        for m in re.finditer(r"np\.load\(([^)]*)\)", text):
            if "allow_pickle=False" not in m.group(1):
                offenders.append(f"{path.relative_to(REPO)}: {m.group(0)}")
        if re.search(r"^\s*import pickle|^\s*from pickle|pickle\.loads?\(", text, re.M):
            offenders.append(f"{path.relative_to(REPO)}: pickle")
    assert offenders == []


def _key_body(private_key: Path) -> list[str]:
    """The base64 lines of an OpenSSH private key (what must never leak)."""
    lines = private_key.read_text().splitlines()
    return [x for x in lines if x and not x.startswith("-----")]


def test_signing_key_and_passphrase_never_leak(tmp_path):
    key = tmp_path / "keys" / "sign"
    proc = cli(tmp_path, "keygen", key, "--json")
    assert proc.returncode == 0, proc.stderr
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    body = _key_body(key)
    out = tmp_path / "dist"
    proc = cli(tmp_path, "--debug", "build", f"{EXAMPLES}:mlp", "--profile", "x86-cpu", "--out", out,
               "--sign-key", key, "--json")
    assert proc.returncode == 0, proc.stderr
    bundle = Path(json.loads(proc.stdout)["bundle"])
    texts = [proc.stdout, proc.stderr] + [p.read_bytes().decode("latin-1") for p in bundle.rglob("*")
                                          if p.is_file()]
    for chunk in body:
        assert not any(chunk in t for t in texts)
    # a key with a passphrase: refused in one line (no terminal to ask on), the passphrase and the
    # key never printed, no bundle
    locked = tmp_path / "keys" / "locked"
    secret = "correct horse battery staple"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", secret, "-f", str(locked)], check=True)
    out2 = tmp_path / "dist2"
    proc = cli(tmp_path, "-q", "build", f"{EXAMPLES}:mlp", "--profile", "x86-cpu", "--out", out2,
               "--sign-key", locked, start_new_session=True)
    assert_one_line(proc, 2, "cannot sign")
    assert secret not in proc.stderr
    assert not any(chunk in proc.stderr for chunk in _key_body(locked))
    assert_nothing_left(tmp_path, out2)
