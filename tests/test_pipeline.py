"""Build end to end on tiny models with the real exporter, quantizers and onnxruntime."""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
import torch

from agent import manifest as agent_manifest
from packager import bundle as bundle_mod
from packager.errors import CheckFailed, SourceError, UsageError
from packager.pipeline import BuildOptions, build

from support import EXAMPLES, REPO, run_agent


def _manifest(b):
    return json.loads((b / "manifest.json").read_text())


def test_fp32_bundle_layout_hashes_and_original_outputs(bundles):
    b = bundles("tiny_cnn", "x86-cpu")
    m = _manifest(b)
    assert m["schema_version"] == 1 and m["format"] == "onnx" and m["precision"] == "fp32"
    assert m["runtime"] == "onnxruntime" and m["profile"]["name"] == "x86-cpu"
    # every file but the manifest is listed with a matching hash
    listed = set(m["files"])
    on_disk = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk
    assert agent_manifest.verify_files(str(b), m)["passed"]
    # one self-contained model file, the agent copied in without caches
    assert sorted(p.name for p in (b / "model").iterdir()) == ["model.onnx"]
    assert "agent/__main__.py" in listed and not any("__pycache__" in f for f in listed)
    # dynamic batch axis, layout recorded
    assert m["inputs"][0]["shape"] == ["batch", 3, 32, 32] and m["inputs"][0]["layout"] == "NCHW"
    # reference vectors hold the ORIGINAL (torch) model's outputs
    from examples_loader import load_factory
    model, _ = load_factory("tiny_cnn")()
    vec = m["vectors"]
    with np.load(b / "vectors.npz") as data:
        x = data[vec["inputs"]["x"]]
        y = data[vec["outputs"]["output"]]
    assert x.shape == (8, 1, 3, 32, 32)
    with torch.no_grad():
        expect = np.stack([model(torch.from_numpy(x[i])).numpy() for i in range(len(x))])
    np.testing.assert_array_equal(y, expect)
    # provenance
    prov = m["provenance"]
    assert len(prov["source"]["sha256"]) == 64 and prov["toolchain"]["torch"].startswith("2.13")
    assert prov["toolchain"]["onnxruntime"] and m["host_parity"]["passed"]


def test_selftest_in_clean_subprocess_passes(bundles, quick_probe):
    b = bundles("tiny_cnn", "x86-cpu")
    proc = run_agent(b, "selftest", "--json", ".", *quick_probe)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # stdout holds the report and nothing else
    assert report["verdict"] == {"passed": True, "status": "pass", "reasons": []}
    assert report["bundle_id"] == agent_manifest.release_id(str(b))
    assert report["integrity"]["passed"] and report["parity"]["passed"]
    lat = report["latency"]
    for key in ("load_ms", "first_run_ms", "mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p95_ms", "max_ms"):
        assert lat[key] >= 0
    assert lat["runs"] >= 5 and lat["p99_ms"] is None  # fewer than 1000 runs: no p99
    assert report["runtime"]["provider"] == "CPUExecutionProvider"
    assert report["peak_rss_bytes"] > 10 * 2**20
    dev = report["device"]
    for key in ("hostname", "arch", "os", "python", "cpu_count", "memory_bytes"):
        assert dev[key]
    assert not list(b.rglob("__pycache__"))


def test_fp16_jetson_bundle_runs_with_provider_fallback(bundles, quick_probe):
    b = bundles("tiny_transformer", "jetson")
    m = _manifest(b)
    model = onnx.load(str(b / "model" / "model.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert m["inputs"][0]["dtype"] == "float32"  # float32 I/O kept
    proc = run_agent(b, "selftest", "--json", ".", *quick_probe)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report["verdict"]
    rt = report["runtime"]
    assert rt["providers_requested"][0] == "TensorrtExecutionProvider"
    assert rt["provider"] == "CPUExecutionProvider"
    assert any("TensorrtExecutionProvider not available" in f for f in rt["fallbacks"])


def test_int8_auto_picks_dynamic_for_transformer_and_static_for_cnn(bundles, caplog):
    t = _manifest(bundles("tiny_transformer", "x86-cpu-int8"))
    assert t["precision"] == "int8"
    assert t["quantization"]["mode"] == "dynamic" and t["quantization"]["calibration"] == "none"
    assert t["quantization"]["per_channel"] is True
    c = _manifest(bundles("tiny_cnn", "x86-cpu-int8"))
    assert c["quantization"]["mode"] == "static" and c["quantization"]["format"] == "QDQ"
    assert c["quantization"]["calibration"] == "synthetic"
    assert any("NO CALIBRATION DATA" in w for w in c["warnings"])
    ops = {n.op_type for n in onnx.load(str(bundles("tiny_cnn", "x86-cpu-int8") / "model/model.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


def test_int8_static_with_calibration_file(tmp_path):
    rng = np.random.default_rng(5)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=rng.standard_normal((16, 3, 32, 32)).astype(np.float32))
    res = build(BuildOptions(source=f"{EXAMPLES}:tiny_cnn", profile="x86-cpu", precision="int8-static",
                             calibration=calib, out=tmp_path / "dist"))
    q = res.manifest["quantization"]
    assert q["mode"] == "static" and q["calibration"].startswith("file:calib.npz sha256:")
    assert q["calibration_samples"] == 16
    assert not any("NO CALIBRATION" in w for w in res.warnings)


def test_module_factory_with_input_shape_and_package_module_form(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    res = build(BuildOptions(source="examples.models:tiny_cnn_module", profile="x86-cpu",
                             input_shapes=["x=1x3x16x16"], out=tmp_path / "d", version="1.2.3"))
    assert res.bundle.name == "tiny_cnn_module-1.2.3-x86-cpu"
    assert res.manifest["inputs"][0]["shape"] == ["batch", 3, 16, 16]


def test_onnx_source_with_symbolic_dims(tmp_path):
    from examples_loader import load_factory
    model, x = load_factory("tiny_transformer")()
    path = tmp_path / "t.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["tokens"], output_names=["logits"], dynamo=False,
                      opset_version=17, dynamic_axes={"tokens": {0: "batch", 1: "seq"}, "logits": {0: "batch"}})
    with pytest.raises(UsageError, match=r"symbolic dimension 'seq' at axis 1.*--input-shape tokens=1xNx64"):
        build(BuildOptions(source=str(path), profile="x86-cpu", out=tmp_path / "d"))
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())
    # The legacy tracer baked seq=16 into a Reshape: another length fails, and says so.
    with pytest.raises(SourceError, match=r"cannot run on its reference inputs \(tokens=\[1, 10, 64\]"):
        build(BuildOptions(source=str(path), profile="x86-cpu", input_shapes=["tokens=1x10x64"], out=tmp_path / "d"))
    res = build(BuildOptions(source=str(path), profile="jetson", input_shapes=["tokens=1x16x64"], out=tmp_path / "d"))
    m = res.manifest
    assert m["inputs"][0]["shape"] == ["batch", "seq", 64]
    with np.load(res.bundle / "vectors.npz") as data:
        assert data[m["vectors"]["inputs"]["tokens"]].shape == (8, 1, 16, 64)
    assert m["provenance"]["source"]["kind"] == "onnx"


def test_integer_inputs_need_real_samples(tmp_path):
    src = tmp_path / "emb.py"
    src.write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.e = torch.nn.Embedding(50, 8); self.h = torch.nn.Linear(8, 3)\n"
        "    def forward(self, ids):\n"
        "        return self.h(self.e(ids).mean(1))\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return M().eval(), torch.zeros(1, 6, dtype=torch.long)\n")
    with pytest.raises(Exception, match=r"input 'ids' is int64.*--inputs FILE.npz"):
        build(BuildOptions(source=f"{src}:make", profile="x86-cpu", out=tmp_path / "d"))
    ids = tmp_path / "ids.npz"
    np.savez(ids, ids=np.random.default_rng(0).integers(0, 50, size=(4, 1, 6)))
    res = build(BuildOptions(source=f"{src}:make", profile="x86-cpu", inputs=ids, out=tmp_path / "d"))
    assert res.manifest["parity"]["inputs"] == "file"
    assert res.manifest["vectors"]["samples"] == 4
    proc = run_agent(res.bundle, "selftest", "--json", ".", "--runs", "3", "--seconds", "0", "--warmup", "0")
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_parity_failure_lists_every_failing_output_and_leaves_nothing(tmp_path):
    src = tmp_path / "two.py"
    src.write_text(
        "import torch\n"
        "class Two(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.a = torch.nn.Linear(16, 4); self.b = torch.nn.Linear(16, 6)\n"
        "    def forward(self, x):\n"
        "        return self.a(x), self.b(x) * 100\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return Two().eval(), torch.randn(1, 16)\n")
    strict = tmp_path / "strict.yaml"
    strict.write_text("extends: x86-cpu\nname: strict\nprecision: fp16\nparity:\n"
                      "  fp16: {atol: 1.0e-9, rtol: 0.0, cosine_min: 0.9999999999, top1_min: 1.0}\n")
    out = tmp_path / "dist"
    with pytest.raises(CheckFailed) as info:
        build(BuildOptions(source=f"{src}:make", profile=str(strict), out=out))
    text = str(info.value)
    assert "output 'output_0'" in text and "output 'output_1'" in text
    assert "atol=1e-09" in text and "cosine" in text
    assert info.value.exit_code == 1
    assert not out.exists() or list(out.iterdir()) == []


def test_model_with_nan_outputs_is_refused(tmp_path):
    src = tmp_path / "nan.py"
    src.write_text("import torch\nclass N(torch.nn.Module):\n    def forward(self, x):\n"
                   "        return torch.log(x - 1000.0)\n"
                   "def make():\n    return N(), torch.randn(1, 4)\n")
    with pytest.raises(SourceError, match=r"original model produces \d+ NaN/Inf values in output 'output'"):
        build(BuildOptions(source=f"{src}:make", profile="x86-cpu", out=tmp_path / "d"))


def test_rebuild_needs_force_and_replaces_atomically(tmp_path):
    opts = BuildOptions(source=f"{EXAMPLES}:mlp", profile="x86-cpu", out=tmp_path / "d", version="1")
    first = build(opts).bundle
    with pytest.raises(Exception, match="already exists.*--force"):
        build(opts)
    opts.force = True
    again = build(opts).bundle
    assert again == first and agent_manifest.verify_files(str(again), _manifest(again))["passed"]
    assert [p.name for p in (tmp_path / "d").iterdir()] == [first.name]


def test_archive_roundtrip_and_unsafe_archives_refused(bundles, tmp_path):
    import io
    import tarfile

    b = bundles("mlp", "x86-cpu")
    arc = bundle_mod.make_archive(b, tmp_path / "b.tar.gz")
    got = bundle_mod.extract_archive(arc, tmp_path / "x")
    assert bundle_mod.verify(got)["name"] == "mlp"

    def evil(name, kind="file"):
        p = tmp_path / f"evil{abs(hash(name + kind))}.tar.gz"
        with tarfile.open(p, "w:gz") as tar:
            ti = tarfile.TarInfo(name)
            if kind == "link":
                ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(ti)
            else:
                ti.size = 2
                tar.addfile(ti, io.BytesIO(b"hi"))
        return p

    for name, kind, why in [("/abs/x", "file", "unsafe path"), ("b/../../x", "file", "unsafe path"),
                            ("b/link", "link", "a link")]:
        dest = tmp_path / "never"
        with pytest.raises(Exception, match=why):
            bundle_mod.extract_archive(evil(name, kind), dest)
        assert not dest.exists()


def test_two_inputs_follow_forward_order_whatever_the_flag_order(tmp_path):
    src = tmp_path / "two_in.py"
    src.write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.a = torch.nn.Linear(8, 4); self.b = torch.nn.Linear(3, 4)\n"
        "    def forward(self, features, extra):\n"
        "        return self.a(features) * torch.sigmoid(self.b(extra))\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return M().eval()\n")
    res = build(BuildOptions(source=f"{src}:make", profile="x86-cpu", out=tmp_path / "d",
                             input_shapes=["extra=1x3", "features=1x8"]))
    assert [i["name"] for i in res.manifest["inputs"]] == ["features", "extra"]
    proc = run_agent(res.bundle, "selftest", "--json", ".", "--runs", "3", "--seconds", "0", "--warmup", "0")
    assert proc.returncode == 0, proc.stdout[-1500:]
    with pytest.raises(Exception, match=r"--input-shape given, forward\(\) takes 2"):
        build(BuildOptions(source=f"{src}:make", profile="x86-cpu", out=tmp_path / "d",
                           input_shapes=["a=1x8", "b=1x3", "c=1x1"]))


def test_a_killed_build_leaves_temps_that_the_next_build_removes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "d"
    out.mkdir()
    code = ("import sys, time; from pathlib import Path; from packager import bundle\n"
            "orig = bundle.write_vectors\n"
            "def slow(*a, **k):\n"
            "    r = orig(*a, **k); print('writing', flush=True); time.sleep(60); return r\n"
            "bundle.write_vectors = slow\n"
            "from packager.pipeline import BuildOptions, build\n"
            f"build(BuildOptions(source='{EXAMPLES}:mlp', profile='x86-cpu', out=Path('{out}'), version='k'))\n")
    systmp = tmp_path / "systmp"     # the killed build's own temp folder stays behind: not in /tmp
    systmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, TMPDIR=str(systmp)))
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and not (out / "mlp-k-x86-cpu").exists()
    foreign = out / ".other.otherhost-1.abc.tmp"
    foreign.mkdir()
    build(BuildOptions(source=f"{EXAMPLES}:mlp", profile="x86-cpu", out=out, version="k"))
    assert sorted(p.name for p in out.iterdir()) == [foreign.name, "mlp-k-x86-cpu"]


def test_same_source_same_hash_and_default_version():
    from packager import sources

    a = sources.load(f"{EXAMPLES}:tiny_transformer", {})
    b = sources.load(f"{EXAMPLES}:tiny_transformer", {})
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
