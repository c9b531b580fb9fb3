"""agent/device.py kept on the device by content hash: sent whole only when its copy is missing
or differs, otherwise a short stub runs the kept copy (packager/fleet/remote.py)."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from packager.fleet import LocalTransport, parse_inventory
from packager.fleet.remote import Device, device_digest, device_source, device_stub


class CountingTransport(LocalTransport):
    def __init__(self):
        super().__init__("local")
        self.lines = []

    def run(self, argv, timeout=600.0, cwd=None, **kw):
        self.lines.append(sum(len(str(a)) + 1 for a in argv))
        return super().run(argv, timeout, cwd, **kw)


def _host(root: Path):
    return parse_inventory({"all": {"hosts": {"d": {
        "edgepack_root": str(root), "ansible_python_interpreter": sys.executable}}}}).select(None)[0]


def test_device_py_is_sent_once_then_run_from_its_kept_copy(tmp_path):
    host = _host(tmp_path / "root")
    t = CountingTransport()
    dev = Device(host, t)
    assert dev.call("status", lease=False)["ok"]
    assert dev.agent_sent == 1 and len(t.lines) == 2  # the stub missed, then the whole source
    kept = tmp_path / "root" / ".agent" / f"device-{device_digest()}.py"
    import agent.device
    assert kept.read_bytes() == Path(agent.device.__file__).read_bytes()
    assert not (kept.stat().st_mode & 0o222)  # read-only

    dev2 = Device(host, t)
    assert dev2.call("prepare", "--id", "a" * 64)["ok"]
    assert dev2.agent_sent == 0
    assert t.lines[-1] < 1000 < len(device_source(host.root))  # only the stub travelled
    assert len(device_stub(host.root)) < 600


def test_a_changed_or_foreign_copy_is_never_run(tmp_path):
    host = _host(tmp_path / "root")
    Device(host, LocalTransport("d")).call("status", lease=False)
    kept = tmp_path / "root" / ".agent" / f"device-{device_digest()}.py"
    os.chmod(kept, 0o644)
    kept.write_text("import sys; print('{\"ok\": true, \"evil\": true}'); sys.exit(0)\n")
    dev = Device(host, LocalTransport("d"))
    out = dev.call("status", lease=False)
    assert "evil" not in out and dev.agent_sent == 1
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == device_digest()


def test_old_copies_are_pruned_and_the_lock_uses_the_stub(tmp_path):
    host = _host(tmp_path / "root")
    d = tmp_path / "root" / ".agent"
    d.mkdir(parents=True)
    for i in range(5):
        (d / f"device-{i:064x}.py").write_text("x")
        os.utime(d / f"device-{i:064x}.py", (i, i))
    dev = Device(host, LocalTransport("d"))
    dev.lock()
    try:
        assert dev.agent_sent == 1 and dev.lease_token
        assert dev.call("prepare", "--id", "b" * 64)["stage"]  # under the lease, by the stub
        assert dev.agent_sent == 1
    finally:
        dev.unlock()
    names = sorted(p.name for p in d.iterdir())
    assert f"device-{device_digest()}.py" in names
    assert len(names) == 3 and f"device-{4:064x}.py" in names and f"device-{0:064x}.py" not in names
    dev2 = Device(host, LocalTransport("d"))
    dev2.lock()
    dev2.unlock()
    assert dev2.agent_sent == 0


def test_facts_probe_only_the_bundles_runtime(tmp_path):
    """push asks `agent facts --runtime R`: importing every runtime (torch, openvino) costs seconds."""
    import json
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    one = subprocess.run([sys.executable, "-B", "-m", "agent", "facts", "--json", "--runtime",
                          "onnxruntime"], cwd=repo, capture_output=True, text=True, timeout=120)
    facts = json.loads(one.stdout)
    assert set(facts["runtimes"]) == {"onnxruntime"} and facts["numpy"]
    assert "CPUExecutionProvider" in facts["runtimes"]["onnxruntime"]["providers"]
