"""packager/progress.py: silent in library use, every event to an installed display, and
`edgepack build` showing its steps live on a terminal (a pseudo-terminal here) but adding
nothing to stdout under --json."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from packager import progress

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


class Recorder:
    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def event(self, e):
        with self.lock:
            self.events.append((e.kind, e.name, e.item, e.text, e.ok))


def test_without_a_display_nothing_is_recorded_and_work_runs(capsys):
    assert not progress.active()
    with progress.step("convert"):
        b = progress.board("push", ["a"])
        b.update("a", "upload")
        b.finish("a", True, "activated")
        b.close()
    assert capsys.readouterr() == ("", "")


def test_a_display_gets_steps_and_board_events_from_threads():
    rec = Recorder()
    with progress.use(rec):
        assert progress.active()
        with pytest.raises(ValueError):
            with progress.step("onnx2tf"):
                raise ValueError("boom")
        b = progress.board("push", ["a", "b"])

        def work(item):
            with progress.working_on(b, item):
                progress.at("upload")
                progress.at("selftest")
            b.finish(item, item == "a", "activated" if item == "a" else "failed", 1.0)
        threads = [threading.Thread(target=work, args=(i,)) for i in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        b.close()
        b.update("a", "late")  # after close: dropped
    progress.at("nowhere")  # outside working_on / use: a no-op
    kinds = [e[0] for e in rec.events]
    assert rec.events[:2] == [("step-start", "onnx2tf", None, None, None),
                              ("step-end", "onnx2tf", None, None, False)]
    assert kinds[2] == "board-start" and kinds[-1] == "board-end"
    for item in ("a", "b"):
        mine = [e[3] for e in rec.events if e[2] == item]
        assert mine == ["upload", "selftest", "activated" if item == "a" else "failed"]
    assert not progress.active()


def _tiny_onnx(path: Path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((8, 4), np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "t",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _cli():
    exe = Path(sys.executable).with_name("edgepack")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "packager.cli"]


def test_build_on_a_terminal_shows_its_steps_and_json_stays_clean(tmp_path):
    model = tmp_path / "m.onnx"
    _tiny_onnx(model)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(_cli() + ["build", str(model), "--profile", "x86-cpu", "--out",
                                      str(tmp_path / "dist")],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            env=dict(os.environ, TERM="xterm-256color"))
    os.close(slave)
    text = ""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            text += data.decode("utf-8", "replace")
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 0, text[-2000:]
    plain = ANSI.sub("", text)
    assert "convert onnx -> onnx" in plain and "host parity" in plain, plain[-2000:]
    assert "bundle   " in plain  # the result still follows

    r = subprocess.run(_cli() + ["build", str(model), "--profile", "x86-cpu", "--out",
                                 str(tmp_path / "dist2"), "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["bundle"] and "\x1b" not in r.stdout + r.stderr
