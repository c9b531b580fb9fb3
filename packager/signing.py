"""Detached signatures of manifest.json with OpenSSH's `ssh-keygen -Y sign` (no crypto of ours).

The device checks them with `ssh-keygen -Y verify` against an allowed_signers file it holds
(default <root>/allowed_signers), before activation (agent/device.py).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from packager.errors import BundleError, UsageError

NAMESPACE = "edgepack"  # must match agent/device.py SIGNATURE_NAMESPACE
PRINCIPAL = "edgepack"  # must match agent/device.py SIGNATURE_PRINCIPAL


def _ssh_keygen() -> str:
    tool = shutil.which("ssh-keygen")
    if not tool:
        raise UsageError("ssh-keygen not found", hint="install OpenSSH (apt-get install "
                                                      "openssh-client)")
    return tool


def allowed_signers_line(pub_key_path: str) -> str:
    """The line a device's allowed_signers file needs to trust this key for edgepack."""
    with open(pub_key_path) as f:
        parts = f.read().split()
    if len(parts) < 2:
        raise UsageError(f"{pub_key_path} is not an OpenSSH public key",
                         hint="pass the .pub file written by `edgepack keygen`")
    return f'{PRINCIPAL} namespaces="{NAMESPACE}" {parts[0]} {parts[1]}'


def keygen(path: str, comment: str = "edgepack signing key", force: bool = False) -> dict:
    """Write an ed25519 key pair (PATH, PATH.pub) without passphrase; return paths and the
    allowed_signers line."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) or os.path.exists(path + ".pub"):
        if not force:
            raise UsageError(f"{path} already exists", hint="choose another path or pass --force")
        for p in (path, path + ".pub"):
            if os.path.exists(p):
                os.unlink(p)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    proc = subprocess.run([_ssh_keygen(), "-q", "-t", "ed25519", "-N", "", "-C", comment,
                           "-f", path], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise UsageError(f"ssh-keygen could not write {path}: {proc.stderr.strip()}",
                         hint="check that the folder is writable")
    line = allowed_signers_line(path + ".pub")
    signers = path + ".allowed_signers"
    with open(signers, "w") as f:
        f.write(line + "\n")
    return {"private_key": path, "public_key": path + ".pub", "allowed_signers": signers,
            "allowed_signers_line": line}


def sign_manifest(bundle_dir: str, key_path: str) -> str:
    """Write <bundle>/signature: a detached SSH signature of manifest.json. Returns its path."""
    manifest = os.path.join(bundle_dir, "manifest.json")
    if not os.path.isfile(manifest):
        raise BundleError(f"{bundle_dir} has no manifest.json", hint="pass a bundle folder")
    key_path = os.path.expanduser(key_path)
    if not os.path.isfile(key_path):
        raise UsageError(f"signing key {key_path} does not exist",
                         hint="create one with `edgepack keygen KEY`")
    with open(manifest, "rb") as data:
        proc = subprocess.run([_ssh_keygen(), "-q", "-Y", "sign", "-f", key_path, "-n", NAMESPACE],
                              stdin=data, capture_output=True)
    if proc.returncode != 0 or not proc.stdout.startswith(b"-----BEGIN SSH SIGNATURE-----"):
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise UsageError(f"cannot sign with {key_path}: {err or 'ssh-keygen failed'}",
                         hint="use a private key without passphrase (edgepack keygen) or load "
                              "it into ssh-agent")
    fd, tmp = tempfile.mkstemp(dir=bundle_dir, prefix=".signature.")
    with os.fdopen(fd, "wb") as f:
        f.write(proc.stdout)
    os.chmod(tmp, 0o644)
    out = os.path.join(bundle_dir, "signature")
    os.replace(tmp, out)
    return out


def verify_manifest(bundle_dir: str, allowed_signers: str) -> tuple[bool, str]:
    """Host-side check (the same one the device runs). Returns (ok, ssh-keygen's message)."""
    sig = os.path.join(bundle_dir, "signature")
    if not os.path.isfile(sig):
        return False, "bundle has no signature"
    with open(os.path.join(bundle_dir, "manifest.json"), "rb") as data:
        proc = subprocess.run([_ssh_keygen(), "-Y", "verify", "-f", allowed_signers,
                               "-I", PRINCIPAL, "-n", NAMESPACE, "-s", sig],
                              stdin=data, capture_output=True, text=True)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()
