import pytest

from packager import formats, profiles
from packager.errors import ProfileError

SHIPPED = {"base", "x86-cpu", "x86-cpu-int8", "jetson", "raspberry-pi", "coral", "android", "jetson-torchscript"}


def test_every_shipped_profile_loads_and_resolves():
    names = set(profiles.shipped_names())
    assert SHIPPED <= names
    for name in names:
        prof = profiles.load(name)
        assert prof.name == name
        assert prof.format in formats.names()
        assert prof.precision in profiles.PRECISIONS
        for prec in profiles.PRECISIONS:
            assert set(prof.thresholds(prec)) == {"atol", "rtol", "outside_share_max", "cosine_min", "sample_cosine_min",
                                                  "slice_cosine_min", "slice_atol", "top1_min"}


def test_jetson_extends_base_and_keeps_provider_order():
    prof = profiles.load("jetson")
    assert prof.format == "onnx" and prof.precision == "fp16"
    assert prof.runtime.providers == ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                                      "CPUExecutionProvider")
    # inherited from base
    assert prof.parity.samples == profiles.load("base").parity.samples
    assert "extends" not in prof.to_dict()


def test_extends_chain_and_deep_merge(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("extends: x86-cpu-int8\nname: mine\nquantization:\n  per_channel: false\n")
    prof = profiles.load(str(f))
    assert prof.name == "mine"
    assert prof.precision == "int8"                      # from x86-cpu-int8
    assert prof.quantization.per_channel is False        # overridden
    assert prof.quantization.mode == "auto"              # kept from the parent's mapping
    assert prof.device.arch == ("x86_64", "AMD64")       # from x86-cpu


def test_overrides_format_and_precision():
    prof = profiles.load("x86-cpu").with_overrides(precision="int8-static")
    assert prof.precision == "int8" and prof.quantization.mode == "static"
    with pytest.raises(ProfileError, match="unknown precision 'int4'"):
        profiles.load("x86-cpu").with_overrides(precision="int4")


@pytest.mark.parametrize("text,match", [
    ("extends: base\nprecison: fp16\n", r"unknown key 'precison'.*did you mean 'precision'"),
    ("extends: base\nprobe:\n  runs: many\n", r"'probe.runs' must be an integer, got str 'many'"),
    ("extends: base\nprecision: fp8\n", r"'precision' must be one of fp32, fp16, int8, got str 'fp8'"),
    ("extends: base\nruntime: [a, b]\n", r"'runtime' must be a mapping"),
    ("extends: base\nprobe: {budget_ms: -3}\n", r"budget_ms' must be > 0"),
    ("format: onnx\nprecision: [\n", r"not valid YAML at line"),
    ("- a\n- b\n", r"must hold a mapping"),
    ("format: onnx\n", r"'precision' is missing"),
    ("extends: base\ndynamic_batch: yes please\n", r"'onnx.dynamic_batch' must be true or false"),
    ("extends: base\nformat: coreml\n", r"'format' must be one of onnx, .*tflite"),
    ("extends: base\ntflite: {io_dtype: int4}\n", r"'tflite.io_dtype' must be"),
    ("extends: base\npasses: {static-shape: {}}\n", r"unknown key 'passes.static-shape'.*did you mean 'static-shapes'"),
    ("extends: base\nonnx: {opset: 99}\n", r"'onnx.opset' must be 7..23"),
])
def test_invalid_profiles_name_file_and_key(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ProfileError, match=match) as info:
        profiles.load(str(f))
    assert str(f) in info.value.message or "YAML" in info.value.message or "mapping" in info.value.message
    assert info.value.hint


def test_extends_cycle_is_detected(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ProfileError, match="cycle: a -> b -> a"):
        profiles.load(str(tmp_path / "a.yaml"))


def test_unknown_name_suggests_closest_and_lists_known():
    with pytest.raises(ProfileError) as info:
        profiles.load("jetsn")
    assert "unknown profile 'jetsn'" in info.value.message
    assert "did you mean 'jetson'" in info.value.hint and "x86-cpu" in info.value.hint


def test_every_problem_in_a_file_is_reported_at_once(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("extends: base\nprecison: fp16\nprobe: {runs: many, budget_metric: p42}\n"
                 "runtime: {threads: -1}\n")
    with pytest.raises(ProfileError) as info:
        profiles.load(str(f))
    text = info.value.message
    for part in ("unknown key 'precison'", "'probe.runs' must be an integer", "'probe.budget_metric' must be one of",
                 "'runtime.threads' must be >= 0", "[4 problems]"):
        assert part in text, (part, text)


def test_old_top_level_keys_still_load(tmp_path):
    f = tmp_path / "old.yaml"
    f.write_text("extends: base\nopset: 18\ndynamic_batch: false\nformat: tflite\n"
                 "quantization: {io_dtype: int8}\n")
    prof = profiles.load(str(f))
    assert prof.format_options("onnx").opset == 18 and prof.format_options("onnx").dynamic_batch is False
    assert prof.format_options("tflite").io_dtype == "int8"


def test_schema_comes_from_the_registries():
    prof = profiles.load("base")
    sections = set(prof.to_dict())
    assert {b.format.value for b in formats.all_backends() if b.options} <= sections
    assert "static-shapes" in prof.to_dict()["passes"]
