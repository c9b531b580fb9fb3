"""Transports: run a command, put a file, get a file. SSH (paramiko) and local.

Every remote command is an argv list joined with shlex.quote: nothing from an inventory or a
bundle ever reaches a remote shell unquoted.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import select
import shlex
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from packager.errors import EdgepackError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 600.0
DEAD_LINK_SECONDS = 10  # TCP_USER_TIMEOUT: unacknowledged data for this long = link is dead


class TransportError(EdgepackError):
    """A device could not be reached or a transfer broke. Fails that device only."""


class HostKeyError(TransportError):
    """Unknown or changed host key: nothing is sent to the device."""


class CommandTimeout(TransportError):
    """A remote command ran past its time limit."""


@dataclass
class Result:
    argv: Sequence[str]
    rc: int
    stdout: str
    stderr: str


def command_line(argv: Sequence[str], cwd: Optional[str] = None) -> str:
    """The one place a remote shell line is made: every word quoted."""
    line = " ".join(shlex.quote(str(a)) for a in argv)
    if cwd:
        line = "cd %s && %s" % (shlex.quote(cwd), line)
    return line


def fingerprint(key) -> str:
    """OpenSSH-style SHA256 fingerprint of a paramiko key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class Transport:
    """The interface rollout needs. `name` is the inventory name, for messages."""

    name = "?"

    def run(self, argv: Sequence[str], timeout: float = COMMAND_TIMEOUT, input: bytes | None = None,
            cwd: str | None = None) -> Result:
        raise NotImplementedError

    def start(self, argv: Sequence[str]) -> "Process":
        """Start a long-lived command (the device lock); stdin stays open."""
        raise NotImplementedError

    def put(self, local: str, remote: str) -> None:
        """Upload to remote + '.part', then rename; the .part is removed on failure."""
        raise NotImplementedError

    def get(self, remote: str, local: str) -> None:
        raise NotImplementedError

    def exists(self, remote: str) -> bool:
        return self.run(["test", "-e", remote], timeout=60).rc == 0

    def sha256(self, remote: str) -> str | None:
        r = self.run(["sha256sum", "--", remote], timeout=600)
        return r.stdout.split()[0] if r.rc == 0 and r.stdout.strip() else None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Process:
    """A started command: readline() from stdout, write() to stdin, close()."""

    def readline(self, timeout: float) -> str:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def stderr_tail(self) -> str:
        """What the command wrote on stderr so far (for error messages)."""
        return ""

    def close(self) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------- local

class LocalTransport(Transport):
    """Runs on this machine through `sh -c` with the same quoted command line as SSH would."""

    def __init__(self, name: str = "local"):
        self.name = name

    def run(self, argv, timeout=COMMAND_TIMEOUT, input=None, cwd=None):
        line = command_line(argv, cwd)
        try:
            p = subprocess.run(["/bin/sh", "-c", line], input=input, capture_output=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"{self.name}: command timed out after {timeout:.0f}s: "
                                 f"{shlex.quote(argv[0])} ...",
                                 hint="raise the timeout or check the device")
        return Result(argv, p.returncode, p.stdout.decode("utf-8", "replace"),
                      p.stderr.decode("utf-8", "replace"))

    def start(self, argv):
        p = subprocess.Popen(["/bin/sh", "-c", command_line(argv)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return _LocalProcess(p)

    def put(self, local, remote):
        part = remote + ".part"
        try:
            shutil.copyfile(local, part)
            os.replace(part, remote)
        except OSError as exc:
            _silent(os.unlink, part)
            raise TransportError(f"{self.name}: upload of {os.path.basename(local)} failed: {exc}",
                                 hint="free space on the device or check its permissions")

    def get(self, remote, local):
        shutil.copyfile(remote, local)


class _LocalProcess(Process):
    def __init__(self, p):
        self.p = p

    def readline(self, timeout):
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        return self.p.stdout.readline().decode("utf-8", "replace") if ready else ""

    def write(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def stderr_tail(self):
        if self.p.poll() is None:
            return ""
        return self.p.stderr.read().decode("utf-8", "replace")[-2000:]

    def close(self):
        _silent(self.p.stdin.close)
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.p.kill()


def _silent(fn, *args):
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - best-effort cleanup
        pass


# ---------------------------------------------------------------------------- SSH

_known_hosts_lock = threading.Lock()


def dead_link_socket(host: str, port: int, timeout: float, dead_after: int = DEAD_LINK_SECONDS):
    """A TCP socket on which a cut link surfaces within ~dead_after seconds.

    paramiko alone hung > 100 s on a link cut mid-upload; TCP_USER_TIMEOUT bounds how long
    sent data may stay unacknowledged, keepalive probes cover an idle connection.
    """
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_USER_TIMEOUT", dead_after * 1000), ("TCP_KEEPIDLE", 3),
                       ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3), ("TCP_NODELAY", 1)):
        if hasattr(socket, opt):
            _silent(sock.setsockopt, socket.IPPROTO_TCP, getattr(socket, opt), value)
    return sock


class SSHTransport(Transport):
    """paramiko over a socket we make; strict host keys; SFTP for files."""

    def __init__(self, name: str, host: str, port: int = 22, user: str | None = None,
                 key_file: str | None = None, known_hosts: str | None = None,
                 accept_new_hosts: bool = False, connect_timeout: float = CONNECT_TIMEOUT,
                 dead_after: int = DEAD_LINK_SECONDS):
        self.name, self.host, self.port, self.user = name, host, int(port), user
        self.key_file = key_file
        self.known_hosts = os.path.expanduser(known_hosts or "~/.ssh/known_hosts")
        self.accept_new_hosts = accept_new_hosts
        self.connect_timeout = connect_timeout
        self.dead_after = dead_after
        self.client = None
        self._sftp = None

    # -- connection
    def connect(self):
        import paramiko

        client = paramiko.SSHClient()
        if os.path.isfile(self.known_hosts):
            try:
                client.load_host_keys(self.known_hosts)
            except (OSError, paramiko.SSHException) as exc:
                raise HostKeyError(f"{self.name}: cannot read known hosts {self.known_hosts}: {exc}",
                                   hint="fix or remove the malformed line")
        client.set_missing_host_key_policy(_Policy(self))
        where = f"{self.host}:{self.port}"
        try:
            sock = dead_link_socket(self.host, self.port, self.connect_timeout, self.dead_after)
        except OSError as exc:
            raise TransportError(f"{self.name}: cannot connect to {where}: {exc}",
                                 hint="check that the device is up, its address and port, "
                                      "and that sshd runs there")
        try:
            client.connect(self.host, port=self.port, username=self.user,
                           key_filename=self.key_file, sock=sock, timeout=self.connect_timeout,
                           banner_timeout=self.connect_timeout, auth_timeout=self.connect_timeout,
                           channel_timeout=self.connect_timeout,
                           look_for_keys=self.key_file is None, allow_agent=self.key_file is None)
        except HostKeyError:
            _silent(client.close)
            raise
        except paramiko.BadHostKeyException as exc:
            _silent(client.close)
            raise HostKeyError(
                f"{self.name}: host key of {where} CHANGED: it offers {exc.key.get_name()} "
                f"{fingerprint(exc.key)}, {self.known_hosts} expects {fingerprint(exc.expected_key)}"
                "; nothing was sent",
                hint="if the device was really reinstalled, remove the old key with "
                     f"ssh-keygen -R '[{self.host}]:{self.port}' -f {self.known_hosts}")
        except paramiko.AuthenticationException as exc:
            _silent(client.close)
            raise TransportError(f"{self.name}: authentication refused for user "
                                 f"{self.user or '(default)'} at {where}: {exc}",
                                 hint="check ansible_user and ansible_ssh_private_key_file, and "
                                      "that the public key is in the device's authorized_keys")
        except (paramiko.SSHException, OSError, EOFError) as exc:
            _silent(client.close)
            raise TransportError(f"{self.name}: SSH to {where} failed: {exc or type(exc).__name__}",
                                 hint="check that sshd runs on the device and the link is up")
        self.client = client
        return self

    def _transport(self):
        t = self.client.get_transport() if self.client else None
        if t is None or not t.is_active():
            raise TransportError(f"{self.name}: connection lost", hint="check the link and retry")
        return t

    # -- commands
    def run(self, argv, timeout=COMMAND_TIMEOUT, input=None, cwd=None):
        import paramiko

        line = command_line(argv, cwd)
        try:
            chan = self._transport().open_session(timeout=self.connect_timeout)
            chan.settimeout(self.dead_after)
            chan.exec_command(line)
            if input:
                chan.sendall(input)
            chan.shutdown_write()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"{self.name}: cannot run a command: {exc or type(exc).__name__}",
                                 hint="check the link and retry")
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        try:
            while True:
                if chan.recv_ready():
                    out += chan.recv(65536)
                    continue
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    continue
                if chan.exit_status_ready() and chan.eof_received:
                    break
                if not chan.get_transport().is_active() or chan.closed:
                    if chan.exit_status_ready():
                        break
                    raise TransportError(f"{self.name}: connection lost while running "
                                         f"{shlex.quote(str(argv[0]))}", hint="check the link")
                if time.monotonic() > deadline:
                    raise CommandTimeout(f"{self.name}: command did not finish within "
                                         f"{timeout:.0f}s", hint="check the device; raise the "
                                                                 "timeout if it is just slow")
                select.select([chan], [], [], 0.05)
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            rc = chan.recv_exit_status()
        finally:
            _silent(chan.close)
        return Result(argv, rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def start(self, argv):
        import paramiko

        try:
            chan = self._transport().open_session(timeout=self.connect_timeout)
            chan.exec_command(command_line(argv))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"{self.name}: cannot start a command: {exc}", hint="retry")
        return _SSHProcess(chan)

    # -- files
    def sftp(self):
        if self._sftp is None:
            import paramiko
            try:
                self._sftp = self.client.open_sftp()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise TransportError(f"{self.name}: cannot open SFTP: {exc}",
                                     hint="enable the sftp subsystem in the device's sshd_config")
            self._sftp.get_channel().settimeout(max(self.dead_after * 3, 30))
        return self._sftp

    def put(self, local, remote):
        part = remote + ".part"
        sftp = self.sftp()
        try:
            sftp.put(local, part, confirm=True)
            sftp.posix_rename(part, remote)
        except Exception as exc:  # noqa: BLE001 - any failure: remove the .part, report
            if self.client and self.client.get_transport() and self.client.get_transport().is_active():
                _silent(sftp.remove, part)
            why = str(exc) or type(exc).__name__
            if "Failure" in why or "No space" in why:
                why += " (device disk full?)"
            raise TransportError(f"{self.name}: upload of {os.path.basename(local)} failed: {why}",
                                 hint="free space on the device, check the link, then push again")

    def get(self, remote, local):
        try:
            self.sftp().get(remote, local)
        except Exception as exc:  # noqa: BLE001
            raise TransportError(f"{self.name}: download of {remote} failed: {exc}", hint="retry")

    def close(self):
        if self._sftp is not None:
            _silent(self._sftp.close)
            self._sftp = None
        if self.client is not None:
            _silent(self.client.close)
            self.client = None


class _SSHProcess(Process):
    def __init__(self, chan):
        self.chan = chan
        self.buf = b""

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.chan.closed:
                break
            if self.chan.recv_ready():
                data = self.chan.recv(65536)
                if not data:
                    break
                self.buf += data
            elif self.chan.exit_status_ready() and not self.chan.recv_ready():
                break
            else:
                select.select([self.chan], [], [], min(left, 0.05))
        line, sep, rest = self.buf.partition(b"\n")
        self.buf = rest
        return (line + sep).decode("utf-8", "replace")

    def write(self, data):
        self.chan.sendall(data)

    def stderr_tail(self):
        err = b""
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if self.chan.recv_stderr_ready():
                err += self.chan.recv_stderr(65536)
            elif self.chan.exit_status_ready():
                break
            else:
                time.sleep(0.05)
        while self.chan.recv_stderr_ready():
            err += self.chan.recv_stderr(65536)
        return err.decode("utf-8", "replace")[-2000:]

    def close(self):
        _silent(self.chan.shutdown_write)
        _silent(self.chan.close)


class _Policy:
    """Unknown host key: refuse, or with --accept-new-hosts trust it once and record it."""

    def __init__(self, owner: SSHTransport):
        self.owner = owner

    def missing_host_key(self, client, hostname, key):
        o = self.owner
        fp = fingerprint(key)
        if not o.accept_new_hosts:
            raise HostKeyError(
                f"{o.name}: host key of {o.host}:{o.port} is unknown ({key.get_name()} {fp}) "
                f"and not in {o.known_hosts}; nothing was sent",
                hint="verify the fingerprint on the device (ssh-keygen -lf "
                     "/etc/ssh/ssh_host_ed25519_key.pub), then add it to the known hosts file or "
                     "pass --accept-new-hosts once")
        entry = hostname  # paramiko passes "[host]:port" for ports other than 22
        with _known_hosts_lock:
            os.makedirs(os.path.dirname(o.known_hosts) or ".", mode=0o700, exist_ok=True)
            with open(o.known_hosts, "a") as f:
                f.write(f"{entry} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(entry, key.get_name(), key)
        log.warning("%s: trusted new host key %s %s (recorded in %s)", o.name, key.get_name(), fp,
                    o.known_hosts)
