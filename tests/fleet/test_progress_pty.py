"""Live progress of `edgepack push` as a user sees it (issue 11, part 4), on the loopback fleet:
through a pseudo-terminal (a live table: each device's step while it works, a running count,
an ETA, then the final table), through a pipe (one plain line per device as it finishes) and
under --json (nothing but the JSON on stdout; the live table on a terminal stderr)."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

from fleet_harness import cli_command

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def _inventory(fleet, tmp_path, root, n=4):
    return fleet.inventory(tmp_path / "fleet.yaml",
                           {f"h{i}": fleet.devices[i].vars() for i in range(n)},
                           group_vars={"edgepack_root": root})


def _pty_run(args, stdout_pipe=False, timeout=180):
    """Run the CLI on a pseudo-terminal (120 x 40); [(seconds since start, text)] as it came,
    plus stdout when stdout_pipe (then only stderr is the terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
    t0 = time.monotonic()
    proc = subprocess.Popen(cli_command() + [str(a) for a in args], stdin=slave,
                            stdout=subprocess.PIPE if stdout_pipe else slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], t0 + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append((time.monotonic() - t0, data.decode("utf-8", "replace")))
            elif proc.poll() is not None:
                break
        out = proc.stdout.read().decode() if stdout_pipe else None
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return proc.returncode, [(t, ANSI.sub("", c)) for t, c in chunks], time.monotonic() - t0, out


def _first(chunks, pattern):
    rx = re.compile(pattern)
    for t, text in chunks:
        if rx.search(text):
            return t
    return None


def test_push_on_a_terminal_shows_each_device_as_it_happens(fleet, bundle_set, tmp_path):
    inv = _inventory(fleet, tmp_path, "~/ep-pty")
    rc, chunks, took, _ = _pty_run(["push", bundle_set["v1"], "-i", inv, "--forks", "1",
                                    "--known-hosts", fleet.known_hosts,
                                    "--reports", tmp_path / "reports"])
    text = "".join(c for _, c in chunks)
    assert rc == 0, text[-2000:]
    first_done = _first(chunks, r"h0\s+activated")
    assert first_done is not None, text[-2000:]
    assert first_done < took - 1.0, (first_done, took)  # seen live, not only at the end
    # the step a device is in while it works, the running count and an ETA
    for step in ("upload", "selftest"):
        assert _first(chunks, rf"h\d\s+{step}") is not None, (step, text[-3000:])
    assert _first(chunks, r"push: 1/4 done") is not None
    assert _first(chunks, r"ETA \d+s") is not None
    t1, t3 = _first(chunks, r"push: 1/4 done"), _first(chunks, r"push: 3/4 done")
    assert t1 is not None and t3 is not None and t1 < t3
    tail = chunks[-1][1] if chunks else ""
    assert "push: 4 activated" in text and "HOST" in text, tail


def test_push_through_a_pipe_prints_a_line_per_device_as_it_finishes(fleet, bundle_set, tmp_path):
    inv = _inventory(fleet, tmp_path, "~/ep-pipe")
    proc = subprocess.Popen(cli_command() + ["push", str(bundle_set["v1"]), "-i", str(inv),
                                             "--forks", "2", "--known-hosts",
                                             str(fleet.known_hosts),
                                             "--reports", str(tmp_path / "reports")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, stamps = [], []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        stamps.append(time.monotonic())
    proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()
    done = [line for line in lines if line.startswith("[")]
    assert [d.split()[0] for d in done] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"], lines
    assert all("activated" in d for d in done)
    assert "\x1b" not in "".join(lines)  # no terminal codes in a pipe
    assert stamps[0] < stamps[-1] - 0.5  # the first line came well before the end
    assert any(line.startswith("HOST") for line in lines)


def test_push_json_keeps_stdout_clean_and_shows_progress_on_a_terminal_stderr(
        fleet, bundle_set, tmp_path):
    inv = _inventory(fleet, tmp_path, "~/ep-json", n=2)
    rc, chunks, _, out = _pty_run(["push", bundle_set["v1"], "-i", inv, "--json",
                                   "--known-hosts", fleet.known_hosts,
                                   "--reports", tmp_path / "reports"], stdout_pipe=True)
    assert rc == 0
    assert json.loads(out)["summary"] == {"activated": 2}
    assert _first(chunks, r"push: \d/2 done") is not None
