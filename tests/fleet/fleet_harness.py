"""Harness: a real fleet on loopback: one OpenSSH daemon per device, each with its own port, host key and
Unix user (with its own home), started once per session and stopped at its end.

What it takes (measured on Debian 12): `/run/sshd` must exist; `sshd -f` wants absolute paths;
`UsePAM no` needs the user's password field to be `*` (a locked `!` account is refused);
`Subsystem sftp internal-sftp`; sshd returns before it listens, so we poll for the banner.

Device Python: the repo's .venv python links into /root/.pyenv, which other users cannot reach
(/root is 0700). So the harness makes two tiny venvs from the system /usr/bin/python3 (the same
3.11 ABI) in a world-readable folder: `full` sees the repo venv's site-packages through a .pth
file (numpy + onnxruntime), `nort` sees only numpy (a device that lacks the runtime).

Skips cleanly (with the reason) when not root, or sshd / useradd / a matching python is missing.
"""
from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.manifest import release_id as _release_id
from packager.bundle import pid_alive
from packager.fleet import FleetOptions
from packager.fleet.inventory import parse

REPO = Path(__file__).resolve().parents[2]
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SYSTEM_PYTHON = "/usr/bin/python3"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "fleet tests need root (they create Unix users and start sshd)"
    if not os.path.exists(SSHD):
        return "sshd not installed (apt-get install openssh-server; scripts/setup.sh does it)"
    for tool in ("useradd", "userdel", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} not found"
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} missing: needed for the devices' Python"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True)
    mine = "%d.%d" % sys.version_info[:2]
    if probe.stdout.strip() != mine:
        return f"{SYSTEM_PYTHON} is {probe.stdout.strip()}, the test venv is {mine}: the devices " \
               "could not load the venv's numpy/onnxruntime"
    return None


def _run(*cmd, check=True, **kw):
    return subprocess.run([str(c) for c in cmd], check=check, capture_output=True, text=True, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_banner(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"sshd on {host}:{port} did not answer within {timeout}s")


def pids_of_uid(uid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    out.append(int(entry))
            except OSError:
                pass
    return out


class Device:
    def __init__(self, fleet: "Fleet", index: int, name: str, netns: str | None = None):
        self.fleet, self.index, self.name, self.netns = fleet, index, name, netns
        self.user = f"epf{fleet.tag}d{index}"
        self.home = fleet.base / "home" / self.user
        self.dir = fleet.base / "sshd" / self.user
        self.address = "127.0.0.1"
        self.port = free_port()
        self.pid: int | None = None
        self.uid = self.gid = -1

    # -- setup
    def create(self):
        _run("userdel", "-r", self.user, check=False)
        _run("useradd", "-M", "-d", self.home, "-s", "/bin/sh", "-p", "*", self.user)
        pw = pwd.getpwnam(self.user)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        ssh = self.home / ".ssh"
        ssh.mkdir(parents=True)
        (ssh / "authorized_keys").write_text(self.fleet.client_pub)
        for p, mode in ((self.home, 0o755), (ssh, 0o700), (ssh / "authorized_keys", 0o600)):
            os.chown(p, self.uid, self.gid)
            os.chmod(p, mode)
        self.dir.mkdir(parents=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.user, "-f",
             self.dir / "host_key")
        self.host_pub = (self.dir / "host_key.pub").read_text().split()[:2]
        (self.dir / "sshd_config").write_text("\n".join([
            f"Port {self.port}", f"ListenAddress {self.address}",
            f"HostKey {self.dir / 'host_key'}", f"PidFile {self.dir / 'sshd.pid'}",
            "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes", "PermitRootLogin no", f"AllowUsers {self.user}",
            "StrictModes yes", "MaxStartups 100:30:200", "MaxSessions 32",
            "LoginGraceTime 30", "Subsystem sftp internal-sftp", "LogLevel INFO", ""]))

    def start(self):
        cmd = [SSHD, "-f", str(self.dir / "sshd_config"), "-E", str(self.dir / "sshd.log")]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        r = _run(*cmd, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"sshd for {self.name} failed: {r.stderr.strip()} "
                               f"{(self.dir / 'sshd.log').read_text() if (self.dir / 'sshd.log').exists() else ''}")

    def wait(self):
        try:
            wait_banner(self.address, self.port)
        except RuntimeError as exc:
            log = self.dir / "sshd.log"
            raise RuntimeError(f"{exc}: {log.read_text()[-500:] if log.exists() else 'no log'}")
        self.pid = int((self.dir / "sshd.pid").read_text().strip())

    def stop(self):
        pidfile = self.dir / "sshd.pid"
        if not self.pid and pidfile.exists():
            try:
                self.pid = int(pidfile.read_text().strip())
            except ValueError:
                pass
        if self.netns:  # every process left in the device's namespace is one we started
            r = _run("ip", "netns", "pids", self.netns, check=False)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.pid = None
        if self.uid >= 0:
            for pid in pids_of_uid(self.uid):  # our own sessions' leftovers, by pid
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def remove(self):
        self.stop()
        time.sleep(0.05)
        _run("userdel", self.user, check=False)

    # -- helpers for tests
    @property
    def known_hosts_line(self) -> str:
        where = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{where} {self.host_pub[0]} {self.host_pub[1]}\n"

    def vars(self, **extra) -> dict:
        v = {"ansible_host": self.address, "ansible_port": self.port, "ansible_user": self.user,
             "ansible_ssh_private_key_file": str(self.fleet.client_key),
             "ansible_python_interpreter": self.fleet.python_full}
        v.update(extra)
        return v

    def path(self, root: str) -> Path:
        """A device path written with ~ (as in an inventory) -> host path."""
        return Path(root.replace("~", str(self.home), 1)) if root.startswith("~") else Path(root)

    def chown_tree(self, path: Path):
        for dirpath, dirnames, filenames in os.walk(path):
            for n in [dirpath] + [os.path.join(dirpath, x) for x in dirnames + filenames]:
                os.lchown(n, self.uid, self.gid)

    def session_pids(self) -> list[int]:
        return pids_of_uid(self.uid)


def reap_stale(own_tag: str) -> None:
    """Remove users and network namespaces of earlier test sessions that died before their
    teardown (SIGKILL): names are epf<pid>d<i> / epf<pid>n<i>, and that pid is gone."""
    pattern = re.compile(r"^epf(\d+)[dn]\d+$")
    users = [line.split(":", 1)[0] for line in open("/etc/passwd") if line.startswith("epf")]
    names = _run("ip", "netns", "list", check=False).stdout.split() if shutil.which("ip") else []
    for name in users + [n for n in names if n.startswith("epf")]:
        m = pattern.match(name)
        if not m or m.group(1) == own_tag or pid_alive(int(m.group(1))):
            continue
        if name in users:
            _run("pkill", "-KILL", "-u", name, check=False)
            _run("userdel", name, check=False)
        else:
            _run("ip", "netns", "del", name, check=False)


class Fleet:
    def __init__(self, base: Path, count: int):
        self.base = base
        self.tag = f"{os.getpid() % 100000}"
        self.devices: list[Device] = []
        self.count = count
        self.netns: list[str] = []
        self.links: list[str] = []
        self.mounts: list[Path] = []

    def start(self):
        reap_stale(self.tag)
        os.makedirs("/run/sshd", exist_ok=True)
        os.chmod(self.base, 0o755)
        (self.base / "home").mkdir(mode=0o755)
        (self.base / "sshd").mkdir(mode=0o700)
        self.client_key = self.base / "client_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgepack-tests", "-f",
             self.client_key)
        self.client_pub = (self.base / "client_key.pub").read_text()
        self._make_pythons()
        for i in range(self.count):
            self.add_device(f"dev{i}")
        self.write_known_hosts()
        return self

    def add_device(self, name: str, netns: str | None = None, address: str | None = None) -> Device:
        d = Device(self, len(self.devices), name, netns)
        if address:
            d.address, d.port = address, 22
        self.devices.append(d)
        try:
            d.create()
            d.start()
            d.wait()
        except Exception:
            d.stop()  # never leave a daemon behind
            raise
        return d

    def _make_pythons(self):
        site_rel = "lib/python%d.%d/site-packages" % sys.version_info[:2]
        repo_site = REPO / ".venv" / site_rel
        if not repo_site.is_dir():
            import numpy
            repo_site = Path(numpy.__file__).resolve().parents[1]
        py = self.base / "py"
        for kind in ("full", "nort"):
            _run(SYSTEM_PYTHON, "-m", "venv", "--without-pip", py / kind)
        (py / "full" / site_rel / "edgepack-tests.pth").write_text(str(repo_site) + "\n")
        nort = py / "nort" / site_rel
        for pkg in ("numpy", "numpy.libs"):
            if (repo_site / pkg).exists():
                os.symlink(repo_site / pkg, nort / pkg)
        self.python_full = str(py / "full" / "bin" / "python3")
        self.python_nort = str(py / "nort" / "bin" / "python3")
        # hang: a real Python whose start-up never ends (a .pth line runs at site import)
        _run(SYSTEM_PYTHON, "-m", "venv", "--without-pip", py / "hang")
        (py / "hang" / site_rel / "edgepack-hang.pth").write_text("import time; time.sleep(3600)\n")
        self.python_hang = str(py / "hang" / "bin" / "python3")
        # oldort: onnxruntime 1.16.3 + numpy 1.26 (scripts/setup.sh makes .venv-device-old)
        old = REPO / ".venv-device-old" / "bin" / "python3"
        self.python_oldort = str(old) if old.exists() else None

    def write_known_hosts(self, path: Path | None = None, devices=None) -> Path:
        path = path or self.base / "known_hosts"
        path.write_text("".join(d.known_hosts_line for d in (devices or self.devices)))
        return path

    @property
    def known_hosts(self) -> Path:
        return self.base / "known_hosts"

    def inventory(self, path: Path, hosts: dict, group_vars: dict | None = None) -> Path:
        """hosts: name -> vars (from Device.vars). Writes an Ansible YAML inventory."""
        import yaml

        data = {"all": {"hosts": hosts}}
        if group_vars:
            data["all"]["vars"] = group_vars
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def tmpfs(self, device: Device, size: str) -> Path:
        mnt = self.base / f"tmpfs-{device.user}-{len(self.mounts)}"
        mnt.mkdir()
        _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755,uid={device.uid},"
             f"gid={device.gid}", "tmpfs", mnt)
        self.mounts.append(mnt)
        return mnt

    def netns_device(self, name: str) -> tuple[Device, callable]:
        """A device behind a veth pair in its own network namespace; returns (device, cut)."""
        n = len(self.netns)
        ns = f"epf{self.tag}n{n}"
        host_if, ns_if = f"epf{self.tag}h{n}", f"epf{self.tag}p{n}"
        net = f"10.{231 + n}.{os.getpid() % 250}"  # unique per session
        _run("ip", "netns", "add", ns)
        self.netns.append(ns)
        self.links.append(host_if)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _run("ip", "link", "set", ns_if, "netns", ns)
        _run("ip", "addr", "add", f"{net}.1/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{net}.2/30", "dev", ns_if)
        _run("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        d = self.add_device(name, netns=ns, address=f"{net}.2")

        def cut():
            _run("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "down")
        return d, cut

    def stop(self):
        for d in self.devices:
            try:
                d.stop()
            except Exception:  # noqa: BLE001
                pass
        time.sleep(0.1)
        for mnt in self.mounts:
            _run("umount", "-l", mnt, check=False)
        for link in self.links:  # deleting one end removes the pair, even while the
            _run("ip", "link", "delete", link, check=False)  # namespace lingers
        for ns in self.netns:
            _run("ip", "netns", "delete", ns, check=False)
        for d in self.devices:
            d.remove()
        shutil.rmtree(self.base, ignore_errors=True)


# ---------------------------------------------------------------------------- bundles

def _tiny_onnx(path: Path, n_in: int = 8, n_out: int = 4, seed: int = 0, opset: int = 17,
               ir: int = 8):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.RandomState(seed).randn(n_in, n_out).astype(np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir
    onnx.save(m, str(path))


def build_bundle(src_dir: Path, out: Path, *extra, seed: int = 0, opset: int = 17,
                 ir: int = 8) -> Path:
    """`edgepack build` of a tiny ONNX model through the real CLI; returns the bundle folder."""
    src_dir.mkdir(parents=True, exist_ok=True)
    model = src_dir / f"tiny{seed}-op{opset}.onnx"
    _tiny_onnx(model, seed=seed, opset=opset, ir=ir)
    exe = Path(sys.executable).with_name("edgepack")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "packager.cli"]
    r = subprocess.run(cmd + ["build", str(model), "--profile", "x86-cpu", "--out", str(out),
                              "--json", *extra], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.skip(f"edgepack build is not working yet: {r.stderr.strip()[-300:]}")
    return Path(json.loads(r.stdout)["bundle"])


def derive(src: Path, dst: Path, files: dict | None = None, manifest: dict | None = None,
           raw_manifest_edit=None) -> Path:
    """Copy a bundle, replace/add files (rel -> bytes), patch manifest keys, re-hash files.
    raw_manifest_edit(text) -> text edits manifest.json afterwards WITHOUT re-hashing (tamper)."""
    shutil.copytree(src, dst)
    sig = dst / "signature"
    if sig.exists() and (files or manifest):
        sig.unlink()
    m = json.loads((dst / "manifest.json").read_text())
    for rel, data in (files or {}).items():
        p = dst / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        m["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    for key, value in (manifest or {}).items():
        m[key] = value
    if files or manifest:
        (dst / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))
    if raw_manifest_edit:
        (dst / "manifest.json").write_text(raw_manifest_edit((dst / "manifest.json").read_text()))
    return dst


def cli_command() -> list:
    exe = Path(sys.executable).with_name("edgepack")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "packager.cli"]


def run_cli(*args, timeout=300):
    return subprocess.run(cli_command() + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout)


def processes_of(uid: int) -> list[str]:
    """'pid: command line' of every process of a device user (what a push may leave)."""
    out = []
    for pid in pids_of_uid(uid):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        out.append(f"{pid}: {cmd.strip()[:200]}")
    return out


def wait_until_gone(uid: int, seconds: float = 10.0) -> list[str]:
    """The device user's processes once none is left, or those still there after `seconds`
    (sshd's own per-connection process for the user goes when the connection closes)."""
    deadline = time.monotonic() + seconds
    while True:
        left = processes_of(uid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# ---------------------------------------------------------------------------- helpers for the tests

def rid(bundle: Path) -> str:
    """A bundle's release id (sha256 of its manifest.json)."""
    return _release_id(str(bundle))


def hosts(spec: dict, root: str):
    """spec: inventory name -> (device, extra vars)."""
    inv = {name: dev.vars(edgepack_root=root, **extra) for name, (dev, extra) in spec.items()}
    return parse({"all": {"hosts": inv}}).select(None)


def opts(fleet, tmp_path, **kw):
    base = dict(known_hosts=str(fleet.known_hosts), reports_dir=str(tmp_path / "reports"),
                connect_timeout=5, forks=16)
    base.update(kw)
    return FleetOptions(**base)


def current_of(dev, root) -> str | None:
    link = dev.path(root) / "current"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def leftovers(dev, root) -> list[str]:
    """Partial uploads and stages left on the device."""
    top = dev.path(root)
    out = [str(p) for p in top.rglob("*.part")] if top.exists() else []
    stage = top / "stage"
    if stage.exists():
        out += [str(p) for p in stage.iterdir()]
    return out


def watch_for_part(top: Path, action, name="blob.bin.part", timeout=20.0):
    """In a thread: as soon as the partial upload `name` appears under top, run action()."""
    fired = threading.Event()

    def loop():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if any(p.stat().st_size > 0 for p in top.rglob(name)):
                    action()
                    fired.set()
                    return
            except OSError:
                pass
            time.sleep(0.002)
    th = threading.Thread(target=loop, daemon=True)
    th.start()
    return th, fired
