"""SSHTransport: paramiko over a socket we make, strict host keys, SFTP for files.

Every call into paramiko or a socket runs inside `ssh_errors`, the one map from their exceptions
to edgepack's TransportError / HostKeyError (httpx's map_exceptions, at the boundary): a changed
host key, a refused login, a dead link or a full disk each end as one line that names the device,
says what failed and how to fix it.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import select
import shlex
import socket
import threading
import time
from contextlib import contextmanager

from packager.fleet.transports import (COMMAND_TIMEOUT, HostKeyError, Process, Result, Transport,
                                       TransportError, interrupted_error, kill_group_line,
                                       marked_line, quietly, split_mark, timeout_error)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
DEAD_LINK_SECONDS = 10  # TCP_USER_TIMEOUT: unacknowledged data for this long = link is dead
RETRY = "check the link and retry"

_known_hosts_lock = threading.Lock()


@contextmanager
def ssh_errors(t: "SSHTransport", what: str, hint: str = RETRY, error=TransportError,
               disk: bool = False):
    """Run a paramiko / socket call; its failure becomes `error("<device>: <what>: <why>")`.

    A changed host key and a refused login get their own message wherever they surface; an
    error of ours (the host-key policy raises HostKeyError from inside paramiko) passes as is.
    `disk`: an SFTP write, where a bare "Failure" usually means the device's disk is full.
    """
    import paramiko

    try:
        yield
    except TransportError:
        raise
    except paramiko.BadHostKeyException as exc:
        raise HostKeyError(
            f"{t.name}: host key of {t.where} CHANGED: it offers {exc.key.get_name()} "
            f"{fingerprint(exc.key)}, {t.known_hosts} expects {fingerprint(exc.expected_key)}"
            "; nothing was sent",
            hint="if the device was really reinstalled, remove the old key with "
                 f"ssh-keygen -R '[{t.host}]:{t.port}' -f {t.known_hosts}") from exc
    except paramiko.AuthenticationException as exc:
        raise TransportError(f"{t.name}: authentication refused for user "
                             f"{t.user or '(default)'} at {t.where}: {exc}",
                             hint="check ansible_user and ansible_ssh_private_key_file, and "
                                  "that the public key is in the device's authorized_keys") from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        why = str(exc) or type(exc).__name__
        if disk and ("Failure" in why or "No space" in why):
            why += " (device disk full?)"
        raise error(f"{t.name}: {what}: {why}", hint=hint) from exc


def fingerprint(key) -> str:
    """OpenSSH-style SHA256 fingerprint of a paramiko key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


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
            quietly(sock.setsockopt, socket.IPPROTO_TCP, getattr(socket, opt), value)
    return sock


class SSHTransport(Transport):
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

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    # -- connection
    def connect(self):
        import paramiko

        client = paramiko.SSHClient()
        try:
            if os.path.isfile(self.known_hosts):
                with ssh_errors(self, f"cannot read known hosts {self.known_hosts}",
                                "fix or remove the malformed line", error=HostKeyError):
                    client.load_host_keys(self.known_hosts)
            client.set_missing_host_key_policy(_Policy(self))
            with ssh_errors(self, f"cannot connect to {self.where}",
                            "check that the device is up, its address and port, and that sshd "
                            "runs there"):
                sock = dead_link_socket(self.host, self.port, self.connect_timeout,
                                        self.dead_after)
            with ssh_errors(self, f"SSH to {self.where} failed",
                            "check that sshd runs on the device and the link is up"):
                t = self.connect_timeout
                client.connect(self.host, port=self.port, username=self.user,
                               key_filename=self.key_file, sock=sock, timeout=t, banner_timeout=t,
                               auth_timeout=t, channel_timeout=t,
                               look_for_keys=self.key_file is None,
                               allow_agent=self.key_file is None)
        except BaseException:
            quietly(client.close)
            raise
        self.client = client
        return self

    def _alive(self) -> bool:
        t = self.client.get_transport() if self.client else None
        return t is not None and t.is_active()

    def _session(self):
        if not self._alive():
            raise TransportError(f"{self.name}: connection lost", hint=RETRY)
        return self.client.get_transport().open_session(timeout=self.connect_timeout)

    # -- commands
    def run(self, argv, timeout=COMMAND_TIMEOUT, cwd=None, interruptible=True):
        with ssh_errors(self, "cannot run a command"):
            chan = self._session()
            try:
                chan.settimeout(self.dead_after)
                chan.exec_command(marked_line(argv, cwd))
                chan.shutdown_write()
                out, err = self._collect(chan, argv, timeout, interruptible)
                rc = chan.recv_exit_status()
            finally:
                quietly(chan.close)
        _, err = split_mark(bytes(err))
        return Result(argv, rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def _collect(self, chan, argv, timeout: float, interruptible: bool = True) -> tuple:
        """stdout and stderr of a command until it exits, the link dies or `timeout` passes
        (or the fleet is cancelled): then its process group on the device is ended."""
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
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
            if self.cancelled(interruptible):
                raise interrupted_error(self.name, self.end_group(split_mark(bytes(err))[0]))
            if time.monotonic() > deadline:
                raise timeout_error(self.name, argv, timeout,
                                    self.end_group(split_mark(bytes(err))[0]))
            select.select([chan], [], [], 0.05)
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        return out, err

    def end_group(self, pgid) -> str:
        """End a command's process group on the device over a new channel (SIGTERM, then
        SIGKILL); what happened, for the error message."""
        if pgid is None:
            return "its process group is unknown, so it may still run on the device"
        try:
            with ssh_errors(self, "cannot end the command"):
                chan = self._session()
                try:
                    chan.settimeout(self.dead_after)
                    chan.exec_command(kill_group_line(pgid))
                    chan.shutdown_write()
                    deadline = time.monotonic() + 30
                    while not chan.exit_status_ready() and time.monotonic() < deadline:
                        select.select([chan], [], [], 0.05)
                finally:
                    quietly(chan.close)
        except TransportError as exc:
            log.debug("%s: ending process group %s failed: %s", self.name, pgid, exc)
            return f"ending its processes failed ({exc.message})"
        return "its processes were ended"

    def start(self, argv):
        with ssh_errors(self, "cannot start a command", "retry"):
            chan = self._session()
            chan.exec_command(marked_line(argv))
        return _SSHProcess(self, chan)

    # -- files
    def _sftp_client(self):
        if self._sftp is None:
            with ssh_errors(self, "cannot open SFTP",
                            "enable the sftp subsystem in the device's sshd_config"):
                self._sftp = self.client.open_sftp()
                self._sftp.get_channel().settimeout(max(self.dead_after * 3, 30))
        return self._sftp

    def put(self, local, remote):
        part = remote + ".part"
        sftp = self._sftp_client()
        try:
            with ssh_errors(self, f"upload of {os.path.basename(local)} failed",
                            "free space on the device, check the link, then push again", disk=True):
                sftp.put(local, part, confirm=True)
                sftp.posix_rename(part, remote)
        except BaseException:
            if self._alive():
                quietly(sftp.remove, part)
            raise

    def close(self):
        if self._sftp is not None:
            quietly(self._sftp.close)
            self._sftp = None
        if self.client is not None:
            quietly(self.client.close)
            self.client = None


class _SSHProcess(Process):
    def __init__(self, owner: SSHTransport, chan):
        self.owner, self.chan = owner, chan
        self.buf = b""
        self.err = b""

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        with ssh_errors(self.owner, "reading from the device failed"):
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self.chan.recv_ready():  # before `closed`: a command that exits at once
                    data = self.chan.recv(65536)  # leaves its output buffered in a closed channel
                    if not data:
                        break
                    self.buf += data
                elif self.chan.closed or self.chan.exit_status_ready():
                    break
                else:
                    select.select([self.chan], [], [], min(left, 0.05))
        line, sep, rest = self.buf.partition(b"\n")
        self.buf = rest
        return (line + sep).decode("utf-8", "replace")

    def write(self, data):
        with ssh_errors(self.owner, "writing to the device failed"):
            self.chan.sendall(data)

    def _read_stderr(self, seconds: float, until_mark: bool = False) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if until_mark and split_mark(self.err)[0] is not None:
                return
            if self.chan.recv_stderr_ready():
                self.err += self.chan.recv_stderr(65536)
                if until_mark and split_mark(self.err)[0] is not None:
                    return
            elif self.chan.exit_status_ready() or self.chan.closed:
                break
            else:
                time.sleep(0.05)
        while self.chan.recv_stderr_ready():
            self.err += self.chan.recv_stderr(65536)

    def stderr_tail(self):
        quietly(self._read_stderr, 2)
        return split_mark(self.err)[1].decode("utf-8", "replace")[-2000:]

    def finished(self):
        return self.chan.closed or self.chan.exit_status_ready()

    def kill(self):
        """End the command's process group (the shell's pid came first on stderr)."""
        quietly(self._read_stderr, 5, True)
        self.owner.end_group(split_mark(self.err)[0])

    def close(self):
        quietly(self.chan.shutdown_write)
        quietly(self.chan.close)


class _Policy:
    """Unknown host key: refuse, or with --accept-new-hosts trust it once and record it."""

    def __init__(self, owner: SSHTransport):
        self.owner = owner

    def missing_host_key(self, client, hostname, key):
        o = self.owner
        fp = fingerprint(key)
        if not o.accept_new_hosts:
            raise HostKeyError(
                f"{o.name}: host key of {o.where} is unknown ({key.get_name()} {fp}) "
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
