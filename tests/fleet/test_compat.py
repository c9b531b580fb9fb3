"""The compatibility guard (issue 11, part 3): what a bundle needs (manifest `needs`), checked
against each device's facts before anything is sent, with the mismatch named.

On the loopback fleet a device runs a venv with onnxruntime 1.16.3 (scripts/setup.sh makes
.venv-device-old): an opset-21 bundle is refused before upload, an opset-17 one activates and
passes its self-test there, and --force-compat pushes anyway (the real runtime then refuses it).
"""
from __future__ import annotations

import json
import subprocess

import pytest

from fleet_harness import _tiny_onnx, build_bundle, current_of, derive, hosts, leftovers, opts
from packager import compat
from packager.fleet import push, status
from packager.formats.onnx.needs import ONNX_RUNTIME_TABLE, oldest_onnxruntime


@pytest.mark.parametrize("opsets,ir,want", [
    ({"ai.onnx": 17}, 8, "1.12"), ({"ai.onnx": 19}, 9, "1.16"), ({"ai.onnx": 20}, 9, "1.17"),
    ({"ai.onnx": 21}, 10, "1.18"), ({"ai.onnx": 19}, 10, "1.18"), ({"ai.onnx": 11}, 6, "1.0"),
    ({"ai.onnx": 17, "ai.onnx.ml": 4}, 8, "1.17"), ({"ai.onnx": 22}, 10, "1.21"),
    ({"ai.onnx": 17, "com.microsoft": 1}, 8, "1.12"),
])
def test_oldest_onnxruntime_from_the_published_table(opsets, ir, want):
    assert oldest_onnxruntime(opsets, ir)[0] == want


def test_the_table_is_ordered_and_never_goes_back():
    rows = ONNX_RUNTIME_TABLE
    assert [compat.version_tuple(r[0]) for r in rows] == sorted(compat.version_tuple(r[0])
                                                                 for r in rows)
    for a, b in zip(rows, rows[1:]):
        assert b[1] >= a[1] and b[2] >= a[2] and b[3] >= a[3]


def test_check_names_every_mismatch():
    needs = {"python": "3.9", "arch": ["aarch64"], "numpy": True, "providers": ["CUDAExecutionProvider"],
             "runtime": {"name": "onnxruntime", "package": "onnxruntime", "min_version": "1.18",
                         "because": "opset 21 (IR 10)"}}
    facts = {"python": "3.8.10", "arch": "x86_64", "numpy": "1.24.4",
             "runtimes": {"onnxruntime": {"version": "1.16.3",
                                          "providers": ["CPUExecutionProvider"]}}}
    got = {m.what: m.message for m in compat.check(needs, facts, "jetson")}
    assert got == {
        "python": "Python 3.8.10 is older than the 3.9 the bundle needs",
        "arch": "device is x86_64, profile 'jetson' targets aarch64",
        "runtime-version": "onnxruntime 1.16.3 cannot load opset 21 (IR 10); needs >= 1.18",
        "provider": "onnxruntime on the device has no CUDAExecutionProvider (has: "
                    "CPUExecutionProvider)"}
    ok = {"python": "3.11.2", "arch": "aarch64", "numpy": "2.0",
          "runtimes": {"onnxruntime": {"version": "1.20.1",
                                       "providers": ["CUDAExecutionProvider"]}}}
    assert compat.check(needs, ok) == []
    # device.py's facts name no providers: that part waits for the agent's facts
    assert compat.check(needs, {**ok, "runtimes": {"onnxruntime": {"version": "1.20.1"}}}) == []
    assert [m.what for m in compat.check(needs, {**ok, "runtimes": {}})] == ["runtime"]
    litert = {"runtime": {"name": "litert", "min_version_by": {"tflite-runtime": "2.14.0"}}}
    old_tfl = {"runtimes": {"litert": {"version": "2.13.0", "distribution": "tflite-runtime"}}}
    new_litert = {"runtimes": {"litert": {"version": "1.4.0", "distribution": "ai-edge-litert"}}}
    assert [m.what for m in compat.check(litert, old_tfl)] == ["runtime-version"]
    assert compat.check(litert, new_litert) == []


def test_the_old_runtime_really_refuses_what_the_table_says(fleet, tmp_path):
    """onnxruntime 1.16.3 (the device venv): opset 19 / IR 9 load, opset 20 and IR 10 do not."""
    if not fleet.python_oldort:
        pytest.skip("no .venv-device-old (scripts/setup.sh makes it)")
    code = ("import sys, onnxruntime as o\ntry:\n    o.InferenceSession(sys.argv[1], "
            "providers=['CPUExecutionProvider']); print('loads')\nexcept Exception as e:\n"
            "    print('refused')")
    got = {}
    for opset, ir in ((19, 9), (20, 9), (19, 10)):
        path = tmp_path / f"m{opset}_{ir}.onnx"
        _tiny_onnx(path, opset=opset, ir=ir)
        r = subprocess.run([fleet.python_oldort, "-c", code, str(path)], capture_output=True,
                           text=True, timeout=120)
        got[(opset, ir)] = r.stdout.strip()
        need = oldest_onnxruntime({"ai.onnx": opset}, ir)[0]
        table = "loads" if compat.at_least("1.16.3", need) else "refused"
        assert got[(opset, ir)] == table, (opset, ir, r.stderr[-500:])
    assert got == {(19, 9): "loads", (20, 9): "refused", (19, 10): "refused"}


@pytest.fixture(scope="module")
def opset21(tmp_path_factory):
    base = tmp_path_factory.mktemp("opset21")
    return build_bundle(base / "src", base / "dist", opset=21, ir=10)


def test_an_old_runtime_is_refused_before_upload_with_the_mismatch(fleet, bundle_set, opset21,
                                                                     tmp_path):
    if not fleet.python_oldort:
        pytest.skip("no .venv-device-old (scripts/setup.sh makes it)")
    needs = json.loads((opset21 / "manifest.json").read_text())["needs"]
    assert needs["runtime"]["min_version"] == "1.18" and needs["runtime"]["ir_version"] == 10
    root = "~/ep-compat"
    dev = fleet.devices[3]
    hs = hosts({"epd3": (dev, {"ansible_python_interpreter": fleet.python_oldort})}, root)
    res = push(str(opset21), hs, opts(fleet, tmp_path))
    d = res.devices[0]
    assert res.exit_code == 1 and d.step == "facts", d
    assert d.reason == "epd3: onnxruntime 1.16.3 cannot load opset 21 (IR 10); needs >= 1.18"
    assert "pip install 'onnxruntime>=1.18'" in d.hint and "--force-compat" in d.hint
    assert d.uploaded_files == 0 and d.uploaded_bytes == 0
    assert not (dev.path(root) / "stage").exists() and current_of(dev, root) is None
    assert d.detail["compat"][0]["what"] == "runtime-version"

    # the same device takes an opset-17 bundle: it loads and passes on 1.16.3
    ok = push(str(bundle_set["v1"]), hs, opts(fleet, tmp_path)).devices[0]
    assert ok.status == "activated" and ok.verdict["passed"], ok.reason
    assert ok.facts["runtimes"]["onnxruntime"]["version"] == "1.16.3"

    # --force-compat: sent anyway; the device's own runtime refuses it at the self-test
    forced = push(str(opset21), hs, opts(fleet, tmp_path, force_compat=True)).devices[0]
    assert forced.status == "failed" and forced.step == "selftest", forced
    assert forced.detail["compat_forced"] and forced.uploaded_files > 0
    assert leftovers(dev, root) == [] and current_of(dev, root) == ok.current

    st = status(hs, opts(fleet, tmp_path)).devices[0]
    assert st.facts["runtimes"]["onnxruntime"]["version"] == "1.16.3"
    assert "onnxruntime 1.16.3" in compat.describe(st.facts)


def test_a_required_provider_is_checked_before_the_model_is_sent(fleet, bundle_set, tmp_path):
    """needs.providers (profile runtime.require_providers): device.py's facts cannot tell, the
    agent's facts can; the refusal comes after the agent upload and before the model."""
    m = json.loads((bundle_set["v1"] / "manifest.json").read_text())
    needs = dict(m["needs"], providers=["CUDAExecutionProvider"])
    bad = derive(bundle_set["v1"], tmp_path / "cuda", manifest={"needs": needs})
    root = "~/ep-provider"
    dev = fleet.devices[4]
    res = push(str(bad), hosts({"gpu": (dev, {})}, root), opts(fleet, tmp_path))
    d = res.devices[0]
    assert d.step == "facts" and "has no CUDAExecutionProvider" in d.reason, d
    agent_files = sum(1 for f in m["files"] if f.startswith("agent/"))
    assert d.uploaded_files == agent_files  # the agent only: no model, no vectors
    assert leftovers(dev, root) == []


def test_require_providers_in_a_profile_reaches_the_manifest(tmp_path):
    prof = tmp_path / "gpu.yaml"
    prof.write_text("name: gpu-only\nextends: x86-cpu\nruntime:\n  providers: "
                    "[CUDAExecutionProvider, CPUExecutionProvider]\n  require_providers: "
                    "[CUDAExecutionProvider]\n")
    b = build_bundle(tmp_path / "src", tmp_path / "dist", "--profile", str(prof))
    needs = json.loads((b / "manifest.json").read_text())["needs"]
    assert needs["providers"] == ["CUDAExecutionProvider"]
    assert needs["runtime"]["name"] == "onnxruntime" and needs["runtime"]["min_version"] == "1.12"


@pytest.mark.slow
def test_litert_min_runtime_version_is_read_from_a_real_tflite_file(tmp_path):
    """The TF-Lite converter writes `min_runtime_version`; the backend reads it back."""
    tf = pytest.importorskip("tensorflow")
    from packager.formats.tflite.needs import min_runtime_version

    model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(4)])
    path = tmp_path / "m.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    need = min_runtime_version(path)
    assert need and compat.version_tuple(need) >= (1, 5), need
    assert min_runtime_version(tmp_path / "m.tflite") == need


def test_torchscript_and_openvino_need_the_release_that_wrote_the_model():
    from importlib import metadata

    from packager import formats
    from packager.formats import Format

    for fmt, dist in ((Format.TORCHSCRIPT, "torch"), (Format.OPENVINO, "openvino")):
        backend = formats.get(fmt)
        rt = backend.requirements(None)  # read from the toolchain, not the file
        built = metadata.version(dist).split("+")[0]
        assert rt["name"] == backend.runtime and built.startswith(rt["min_version"] + ".")
        older = ".".join(str(x) for x in (compat.version_tuple(built)[0] - 1, 0))
        facts = {"runtimes": {backend.runtime: {"version": older}}}
        (m,) = compat.check({"runtime": rt}, facts)
        assert m.message.startswith(f"{backend.runtime} {older} cannot load ") and \
            m.message.endswith(f"needs >= {rt['min_version']}")
