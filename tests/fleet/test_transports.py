"""Transports: quoting, the SSH exception map, host keys, refused logins, full disks, dead links."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from fleet_harness import current_of, hosts, leftovers, opts, rid, watch_for_part
from packager.fleet import (CommandTimeout, HostKeyError, LocalTransport, SSHTransport, TransportError,
                            push)
from packager.fleet.transports import command_line
from packager.fleet.transports.ssh import ssh_errors


def test_command_line_quotes_every_word(tmp_path):
    evil = f"x'; touch {tmp_path}/pwned; echo '$(id)`id`"
    line = command_line(["printf", "%s", evil], cwd=str(tmp_path / "a dir; rm -rf /"))
    (tmp_path / "a dir; rm -rf /").mkdir(parents=True)
    out = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True)
    assert out.stdout == evil and not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------- over SSH

def test_wrong_and_unknown_host_key(fleet, bundle_set, tmp_path):
    root = "~/ep-hostkey"
    a, b = fleet.devices[2], fleet.devices[3]
    hs = hosts({"a": (a, {})}, root)
    wrong = tmp_path / "wrong_known_hosts"  # a's address and port with b's key
    wrong.write_text(f"[{a.address}]:{a.port} {b.host_pub[0]} {b.host_pub[1]}\n")
    res = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, known_hosts=str(wrong)))
    d = res.devices[0]
    assert res.exit_code == 1 and d.step == "connect"
    assert "CHANGED" in d.reason and "SHA256:" in d.reason and "nothing was sent" in d.reason
    assert not a.path(root).exists()
    # --accept-new-hosts never overrides a changed key
    res = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, known_hosts=str(wrong),
                                                       accept_new_hosts=True))
    assert res.exit_code == 1 and "CHANGED" in res.devices[0].reason

    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    res = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, known_hosts=str(empty)))
    assert res.exit_code == 1 and "unknown" in res.devices[0].reason
    assert "SHA256:" in res.devices[0].reason and not a.path(root).exists()
    res = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, known_hosts=str(empty),
                                                       accept_new_hosts=True))
    assert res.exit_code == 0, res.devices[0].reason
    assert f"[{a.address}]:{a.port} ssh-ed25519 {a.host_pub[1]}" in empty.read_text()
    # recorded: strict mode now accepts it
    res = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path, known_hosts=str(empty)))
    assert res.exit_code == 0 and res.devices[0].status == "unchanged"


def test_auth_refused_and_daemon_gone(fleet, bundle_set, tmp_path):
    a, b = fleet.devices[2], fleet.devices[3]
    hs = hosts({"wronguser": (a, {"ansible_user": b.user}),
                       "gone": (a, {"ansible_port": 1})}, "~/ep-auth")
    res = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path))
    got = dict(res)
    assert res.exit_code == 1
    assert "authentication refused" in got["wronguser"].reason
    assert "cannot connect" in got["gone"].reason and got["gone"].seconds < 10


def test_hostile_names_never_reach_a_shell(fleet, bundle_set, tmp_path):
    canary = Path(f"/tmp/edgepack-pwned-{os.getpid()}")
    name = f"dev one; touch {canary}-a $(touch {canary}-b) `touch {canary}-c` 'q\"uote"
    root = f"~/ep root '$(touch {canary}-d)';x \"y\""
    dev = fleet.devices[7]
    hs = hosts({name: (dev, {})}, root)
    res = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path))
    assert res.exit_code == 0, res.devices[0].reason
    assert current_of(dev, root) == rid(bundle_set["v1"])  # the literal folder name
    assert not list(Path("/tmp").glob(canary.name + "*"))
    report_dirs = [p for p in (tmp_path / "reports").iterdir() if p.is_dir()]
    assert len(report_dirs) == 1 and "$" not in report_dirs[0].name and " " not in report_dirs[0].name


def test_full_disk_leaves_no_part_and_keeps_current(fleet, bundle_set, tmp_path):
    dev = fleet.devices[6]
    mnt = fleet.tmpfs(dev, "4m")
    root = str(mnt / "ep")
    hs = hosts({"full": (dev, {})}, root)
    assert push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path)).exit_code == 0
    res = push(str(bundle_set["big"]), hs, opts(fleet, tmp_path))
    d = res.devices[0]
    assert res.exit_code == 1 and d.step == "upload", d.reason
    assert "blob.bin" in d.reason and "full" in d.reason
    assert current_of(dev, root) == rid(bundle_set["v1"])
    assert leftovers(dev, root) == []
    free = os.statvfs(mnt)
    assert free.f_bavail * free.f_frsize > 3 * 1024 * 1024  # the space came back


@pytest.mark.slow
def test_link_cut_mid_upload_is_bounded(fleet, bundle_set, tmp_path):
    try:
        dev, cut = fleet.netns_device("netdev")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"network namespaces unavailable: {exc}")
    fleet.write_known_hosts()
    root = "~/ep-cut"
    hs = hosts({"cut": (dev, {}), "ok": (fleet.devices[0], {})}, root)
    th, fired = watch_for_part(dev.path(root), cut)
    t0 = time.monotonic()
    res = push(str(bundle_set["big"]), hs, opts(fleet, tmp_path))
    elapsed = time.monotonic() - t0
    th.join()
    got = dict(res)
    assert fired.is_set(), [(d.host, d.status, d.step, d.reason) for d in res.devices]
    assert res.exit_code == 3
    assert got["ok"].status == "activated" and got["ok"].seconds < 20
    assert got["cut"].status == "failed" and got["cut"].step == "upload"
    assert elapsed < 45, f"dead link took {elapsed:.0f}s to surface"
    assert current_of(dev, root) is None


# ---------------------------------------------------------------------------- the exception map

@pytest.fixture
def unconnected(tmp_path):
    return SSHTransport("cam1", "127.0.0.1", 1, "ops", known_hosts=str(tmp_path / "known_hosts"),
                        connect_timeout=2)


def test_ssh_errors_map_paramiko_and_socket_failures(unconnected):
    import paramiko

    def mapped(exc, **kw):
        with pytest.raises(TransportError) as info:
            with ssh_errors(unconnected, "upload of m.bin failed", "free space", **kw):
                raise exc
        return info.value

    e = mapped(paramiko.AuthenticationException("Authentication failed."))
    assert e.message == ("cam1: authentication refused for user ops at 127.0.0.1:1: "
                         "Authentication failed.") and "authorized_keys" in e.hint
    e = mapped(socket.timeout("timed out"))
    assert e.message == "cam1: upload of m.bin failed: timed out" and e.hint == "free space"
    assert mapped(EOFError()).message.endswith("failed: EOFError")
    assert mapped(OSError("Failure"), disk=True).message.endswith("Failure (device disk full?)")
    key = paramiko.RSAKey.generate(1024)
    e = mapped(paramiko.BadHostKeyException("cam1", key, paramiko.RSAKey.generate(1024)))
    assert isinstance(e, HostKeyError) and "CHANGED" in e.message and "ssh-keygen -R" in e.hint
    assert isinstance(mapped(paramiko.SSHException("bad line"), error=HostKeyError), HostKeyError)
    ours = CommandTimeout("cam1: command did not finish within 3s")
    assert mapped(ours) is ours  # already ours: passes as is
    with pytest.raises(ZeroDivisionError):  # a bug is not a transport error
        with ssh_errors(unconnected, "x"):
            1 / 0


def test_connect_and_run_failures_are_transport_errors(unconnected):
    with pytest.raises(TransportError, match="cam1: connection lost"):
        unconnected.run(["true"])
    with pytest.raises(TransportError, match=r"cam1: cannot connect to 127.0.0.1:1: .*refused") as e:
        unconnected.connect()
    assert "sshd runs there" in e.value.hint and unconnected.client is None


def test_local_transport_failures(tmp_path):
    t = LocalTransport("here")
    src = tmp_path / "m.bin"
    src.write_bytes(b"x")
    with pytest.raises(TransportError, match="here: upload of m.bin failed"):
        t.put(str(src), str(tmp_path / "no" / "such" / "m.bin"))
    t.put(str(src), str(tmp_path / "copy.bin"))
    assert (tmp_path / "copy.bin").read_bytes() == b"x" and not list(tmp_path.glob("*.part"))
    with pytest.raises(CommandTimeout, match="sleep did not finish within 0s; its processes "
                                             "were ended"):
        t.run(["sleep", "5"], timeout=0.2)
    r = t.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.rc, r.stdout, r.stderr) == (3, "out\n", "err\n")


def _running(marker: str) -> list:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmd:
                out.append(cmd)
    return out


def test_a_timed_out_or_cancelled_command_leaves_no_process(tmp_path):
    """The command and everything it started (its process group) end with it: on a timeout,
    on `cancel` (Ctrl-C), but not for a cleanup command (interruptible=False)."""
    import threading

    from packager.fleet.transports import Interrupted

    t = LocalTransport("here")
    marker = f"sleep 30{os.getpid() % 10}"
    script = f"{marker} & {marker} & wait"
    with pytest.raises(CommandTimeout, match="were ended"):
        t.run(["sh", "-c", script], timeout=0.5)
    assert _running(marker) == []
    t.cancel = threading.Event()
    threading.Timer(0.5, t.cancel.set).start()
    with pytest.raises(Interrupted, match=r"here: interrupted \(Ctrl-C\); its processes were ended"):
        t.run(["sh", "-c", script], timeout=60)
    assert _running(marker) == []
    r = t.run(["sh", "-c", "echo cleanup"], interruptible=False)  # cancel is still set
    assert r.rc == 0 and r.stdout == "cleanup\n" and r.stderr == ""
    p = t.start(["sh", "-c", script])
    time.sleep(0.3)
    assert _running(marker) and not p.finished()
    p.kill()
    p.close()
    assert _running(marker) == []
