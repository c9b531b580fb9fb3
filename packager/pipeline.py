"""build(): resolve -> load -> reference run -> route steps (+ graph passes) -> quantize -> parity -> bundle.

Data flows one way: SourceModel -> Artifact (one per step, pass and quantization) -> Bundle.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from agent.manifest import sha256_file

from . import bundle, data, formats, hostbench, layout, passes, profiles, progress, routes, sources
from .errors import SourceError, UsageError, short
from .formats.base import BuildContext
from .manifest import build_manifest, conversion_section
from .passes.bind_inputs import drop_bound
from .quant import recipes, recover
from .specs import TensorSpec, parse_input_shapes

log = logging.getLogger(__name__)


@dataclass
class BuildOptions:
    source: str
    profile: str
    out: Path = Path("dist")
    format: str | None = None
    precision: str | None = None
    input_shapes: list[str] = field(default_factory=list)
    inputs: Path | None = None
    calibration: Path | None = None
    name: str | None = None
    version: str | None = None
    budget_ms: float | None = None
    sign_key: Path | None = None
    force: bool = False
    command: str | None = None
    torchscript_mode: str | None = None     # auto | trace | script (TorchScript targets)
    profile_patch: dict | None = None       # deep-merged into the profile (edgepack tune's candidates)
    diagnose: bool = False                  # keep the per-tensor table in the manifest (edgepack diagnose)


@dataclass
class BuildResult:
    bundle: Path
    manifest: dict
    warnings: list[str]


def resolve_profile(opts: BuildOptions) -> profiles.Profile:
    prof = profiles.load(opts.profile)
    if opts.format or opts.precision or opts.torchscript_mode:
        prof = prof.with_overrides(opts.format, opts.precision, opts.torchscript_mode)
    if opts.profile_patch:
        prof = prof.with_patch(opts.profile_patch)
    return prof


def _check_options(opts: BuildOptions) -> None:
    """Everything about the command line that can be refused before any conversion work."""
    for flag, value in (("--version", opts.version), ("--name", opts.name)):
        if value is not None and not _safe_token(value):
            raise UsageError(f"{flag} '{value}' has characters that do not belong in a folder name",
                             "use letters, digits, '.', '_' and '-'")
    if opts.budget_ms is not None and opts.budget_ms <= 0:
        raise UsageError(f"--latency-budget-ms must be > 0, got {opts.budget_ms}", "pass a positive number of ms")
    if opts.sign_key is not None and not Path(opts.sign_key).is_file():
        raise UsageError(f"signing key '{opts.sign_key}' does not exist",
                         "create one with `edgepack keygen KEY`, or pass the right path")
    bundle.check_out_dir(opts.out)


def reference_inputs(src, opts: BuildOptions, count: int, shapes: dict) -> tuple[list[dict], str]:
    if opts.inputs:
        return data.load_npz(opts.inputs, src.inputs, "inputs", limit=count), "file"
    if src.example is not None and not shapes:
        rest = data.generate(src.inputs, count - 1) if count > 1 else []
        return [src.example] + rest, "generated (seed 0) + factory example"
    return data.generate(src.inputs, count), "generated (seed 0)"


def calibration_file(src, opts: BuildOptions, prof: profiles.Profile) -> list[dict] | None:
    """--calibration read and checked (names, dtypes, shapes) before any conversion work, where the
    profile may calibrate (int8, not dynamic): a wrong file fails in seconds, not after the route."""
    if not opts.calibration or prof.precision != "int8" or prof.quantization.mode == "dynamic":
        return None
    return data.load_npz(opts.calibration, src.inputs, "calibration", limit=prof.quantization.calibration_samples)


def calibration_set(src, opts: BuildOptions, plan, warnings: list, given: list[dict] | None
                    ) -> tuple[list[dict] | None, str]:
    """The samples static int8 calibrates on, and where they came from (manifest); given: the
    --calibration samples calibration_file read before the route (it reads them for every profile whose
    plan calibrates: static int8 comes only from an int8 profile whose mode is not dynamic)."""
    if not plan.needs_calibration:
        if opts.calibration and plan.precision != "int8":
            warnings.append(f"--calibration is ignored for precision {plan.precision}")
        return None, "none"
    limit = plan.calibration_samples
    if opts.calibration:
        return given, f"file:{opts.calibration.name} sha256:{sha256_file(opts.calibration)[:16]}"
    if opts.inputs:
        warnings.append("calibrating static int8 on --inputs: pass --calibration FILE.npz "
                        "with representative data for better accuracy")
        return data.load_npz(opts.inputs, src.inputs, "inputs", limit=limit), "inputs"
    warnings.append("NO CALIBRATION DATA: static int8 is calibrated on random inputs, "
                    "which rarely match real activations; pass --calibration FILE.npz. "
                    "The manifest records calibration: synthetic")
    return data.generate(src.inputs, limit, seed=1), "synthetic"


def run_route(ctx: BuildContext, route: routes.Route) -> tuple:
    """Run the route's steps, each followed by the graph passes that apply; returns the artifact,
    the steps' records and the passes' records."""
    art, step_records, pass_records = None, [], []
    for i, step in enumerate(route.steps):
        log.info("converting: %s -> %s", step.source, step.target.value)
        bound = (art.info.get("bound_inputs") if art is not None else None) or {}
        with progress.step(f"convert {step.source} -> {step.target.value}"):
            art = step.run(ctx) if step.exports else step.run(ctx, art)
        if bound and "bound_inputs" not in art.info:   # inputs a pass made constants stay constants
            art = art.with_info(bound_inputs=bound)
        step_records.append({**step.describe(), **art.info})
        following = formats.get(route.steps[i + 1].target) if i + 1 < len(route.steps) else None
        art, ran = passes.apply(ctx, art, following)
        pass_records.extend(ran)
    return art, step_records, pass_records


def absolute_paths(opts: BuildOptions) -> BuildOptions:
    """The options with every user path made absolute: the conversion steps run with the build's
    temp folder as the working directory (ORT's quantizer and shape inference write into it). The
    source is loaded before that, as the user wrote it; its loader keeps the absolute path."""
    absolute = {k: Path(os.path.abspath(v)) for k in ("out", "inputs", "calibration", "sign_key")
                if (v := getattr(opts, k)) is not None}
    return dataclasses.replace(opts, **absolute)


@contextlib.contextmanager
def working_dir(path: Path):
    """chdir into `path` for the block; the caller's directory comes back on every exit (Ctrl-C too)."""
    path.mkdir(parents=True, exist_ok=True)
    before = os.getcwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(before)


@contextlib.contextmanager
def scratch(tmp: Path):
    """Temp files of the libraries a build calls (Python's tempfile, TMPDIR for C++ code and child
    processes, torch's inductor cache) go under the build's own temp folder for the block."""
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    env = {"TMPDIR": str(tmp / "tmp"), "TORCHINDUCTOR_CACHE_DIR": str(tmp / "torch-cache")}
    before_env = {k: os.environ.get(k) for k in env}
    before_dir = tempfile.tempdir
    os.environ.update({k: v for k, v in env.items() if k == "TMPDIR" or not os.environ.get(k)})
    tempfile.tempdir = str(tmp / "tmp")
    try:
        yield
    finally:
        tempfile.tempdir = before_dir
        for k, v in before_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build(opts: BuildOptions) -> BuildResult:
    """A build writes nothing outside --out and its own temp folder (removed on every exit)."""
    given_out = Path(opts.out)
    opts = absolute_paths(opts)
    with tempfile.TemporaryDirectory(prefix="edgepack-build-") as tmp, scratch(Path(tmp)):
        result = _build(opts, Path(tmp))
    if not given_out.is_absolute():   # the bundle path as the user wrote --out
        result.bundle = given_out / result.bundle.name
    return result


def _build(opts: BuildOptions, tmp: Path) -> BuildResult:
    warnings: list[str] = []
    prof = resolve_profile(opts)
    backend = formats.get(prof.format)
    shapes = parse_input_shapes(opts.input_shapes)
    _check_options(opts)

    log.info("loading %s", opts.source)
    src = sources.load(opts.source, shapes, data.describe(opts.inputs) if opts.inputs else None)
    route = routes.plan(src.kind, backend.format)     # a format this source cannot reach fails here
    backend.check_route(route)
    sources.check_route(src, route)
    ref_inputs, input_origin = reference_inputs(src, opts, prof.parity.samples, shapes)
    given_calib = calibration_file(src, opts, prof)

    log.info("running the original model on %d reference inputs", len(ref_inputs))
    try:
        ref_outputs = [src.run(x) for x in ref_inputs]
    except Exception as exc:
        shapes_txt = ", ".join(f"{k}={list(v.shape)}:{v.dtype}" for k, v in ref_inputs[0].items())
        guessed = [n for n in src.notes if n.startswith("shapes from --inputs")]
        raise SourceError(f"the model cannot run on its reference inputs ({shapes_txt}"
                          + (f"; {guessed[0]}" if guessed else "") + f"): {type(exc).__name__}: {short(exc)}",
                          ("if each --inputs row is a whole sample, say its shape with --input-shape NAME=AxB; "
                           if guessed else "") + "check --input-shape / --inputs against what forward() expects"
                          ) from exc
    data.check_finite(ref_outputs, "the original model")
    if not src.outputs:
        src = src.with_outputs([TensorSpec(k, v.dtype.name, list(v.shape)) for k, v in ref_outputs[0].items()])

    with working_dir(tmp / "cwd"):
        ctx = BuildContext(source=src, profile=prof, workdir=Path(tmp), example=ref_inputs[0],
                           layout=layout.plan(src.inputs, prof, backend))
        art, step_records, pass_records = run_route(ctx, route)
        warnings.extend(art.warnings)
        changes = art.info.get("layout_changes") or {}
        bound = art.info.get("bound_inputs") or {}     # inputs the bind-inputs pass made constants

        plan = backend.quant_plan(prof, art)           # int8 'auto' resolved here, once
        calib, calib_info = calibration_set(src, opts, plan, warnings, given_calib)
        if calib is not None:
            calib = [layout.to_model_layout(x, changes) for x in drop_bound(calib, bound, "calibration")]
        float_art = art
        # The vectors and the converted model take inputs in the model's layout (NHWC for a
        # channels-last TF-Lite model); the outputs stay the ORIGINAL model's.
        model_inputs = [layout.to_model_layout(x, changes) for x in drop_bound(ref_inputs, bound, "reference")]
        settings = backend.runtime_settings(prof)
        log.info("%s and host parity on %d samples", plan.precision, len(ref_inputs))
        with progress.step(f"quantize {plan.precision}" + (f" {plan.mode}" if plan.mode else "") + " + host parity"):
            done = recover.run(backend, art, plan, calib, ctx.folder("quantize"), prof, model_inputs, ref_outputs,
                               settings, label=f"{src.name} -> {backend.format.value} {prof.precision} "
                                               f"(profile {prof.name})", diagnose=opts.diagnose)
        art, par, host_rt, thresholds = done.artifact, done.parity, done.runtime, done.thresholds
        warnings.extend(w for w in art.warnings if w not in warnings)

        quant = dict(art.info) if plan.precision != "fp32" else {}
        if plan.precision == "int8":
            quant["calibration"] = calib_info
        full = done.full
        timed = hostbench.timings(float_art if plan.precision == "int8" else None, art, host_rt, model_inputs[0],
                                  settings, full=full.art if full else None, full_rt=full.runtime if full else None)
        if "fallback_cost" in timed:
            quant["fallback_cost"] = {**timed["fallback_cost"], "full_int8_recipe": recipes.label(full.plan)}
        speed = timed.get("host_latency")
        if speed is not None:
            quant["host_latency"] = speed
            if speed["speedup"] < 0.95:  # 5 % margin: timing noise on a busy host
                warnings.append(
                    f"int8 ran {1 / speed['speedup']:.2f}x SLOWER than fp32 on this host "
                    f"({speed['int8_ms']:.3f} vs {speed['fp32_ms']:.3f} ms median): the CPU may lack "
                    "fast int8 kernels for this model (common for small or conv models on AVX2 CPUs); check on the "
                    "device, or use --precision fp32 / fp16")
        probe = prof.probe.to_dict()
        if opts.budget_ms is not None:
            probe["budget_ms"] = float(opts.budget_ms)
        version = opts.version or src.sha256[:8]
        name = opts.name or src.name
        manifest = build_manifest(
            name=name, version=version, profile=prof, backend=backend, art=art, thresholds=thresholds,
            input_origin=input_origin, probe=probe,
            conversion=conversion_section(route, step_records, pass_records),
            quantization=quant, host_parity=par, warnings=warnings, source=src, command=opts.command)
        out = bundle.write(opts.out, f"{name}-{version}-{prof.name}", backend.bundle_files(art),
                           manifest, model_inputs, ref_outputs, force=opts.force,  # ORIGINAL outputs
                           finalize=_signer(opts.sign_key))
    return BuildResult(bundle=out, manifest=bundle.load_manifest(out), warnings=warnings)


def _signer(key: Path | None):
    if key is None:
        return None

    def sign(folder: Path) -> None:
        from . import signing

        signing.sign_manifest(str(folder), str(key))

    return sign


def _safe_token(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "._-" for c in text) and not text.startswith(".")
