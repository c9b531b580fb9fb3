"""OpenVINO IR models (model/model.xml + model/model.bin) on the `openvino` package.

Named openvino_rt.py, not openvino.py, so that the module is never mistaken for the library it
imports (openvino is imported only inside load(), when a bundle needs it).

settings (the manifest's runtime_settings):
  devices              OpenVINO devices tried in order, e.g. [GPU, CPU]; a device this machine
                       lacks or that fails to compile the model is skipped and reported in
                       fallbacks; the CPU ends the chain. Without `devices`, `providers` is read
                       (CPUExecutionProvider = CPU; other onnxruntime providers are skipped).
  threads              INFERENCE_NUM_THREADS (0 = OpenVINO's default), on devices that take it
  performance_hint     LATENCY (default) | THROUGHPUT | CUMULATIVE_THROUGHPUT
  inference_precision  f32 (default) | f16 | bf16 | default. f32 computes at the precision the
                       bundle was checked at: OpenVINO's own default is bf16 on CPUs with bf16
                       units and f16 on GPUs, which an fp32 bundle's parity would not pass.
                       float16 IR weights (compress_to_fp16) with float32 I/O run either way.
"""
import importlib

from .base import Runtime, RuntimeLoadError, contiguous, dist_version, short, thread_setting

CPU = "CPU"
VIRTUAL = ("AUTO", "MULTI", "HETERO", "BATCH")  # meta-devices: tried as given, never in available_devices
HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
PRECISIONS = {"f32": "f32", "fp32": "f32", "float32": "f32", "f16": "f16", "fp16": "f16",
              "float16": "f16", "bf16": "bf16", "bfloat16": "bf16", "default": None}


class OpenVinoRuntime(Runtime):
    name = "openvino"
    install_hint = "pip install openvino"

    def __init__(self):
        Runtime.__init__(self)
        self.performance_hint = None
        self.inference_precision = None
        self._compiled = None
        self._request = None
        self._in_dtypes = {}
        self._out_plan = []

    def load(self, model_path, settings):
        ov = self.import_library("openvino")
        self.version = dist_version("openvino") or getattr(ov, "__version__", "unknown")
        core = ov.Core()
        self.providers_available = list(core.available_devices)
        chain = self._device_chain(settings)
        config = self._config(settings)
        try:
            model = core.read_model(model_path)
        except Exception as exc:
            raise RuntimeLoadError("openvino could not read %s: %s" % (model_path, ov_message(exc)))
        last_error = None
        for i, device in enumerate(chain):
            try:
                self._compiled = core.compile_model(model, device, self._supported(core, device, config))
                break
            except Exception as exc:  # a device that is present but cannot take the model
                last_error = exc
                if i + 1 < len(chain):
                    self.fallbacks.append("%s failed to start: %s" % (device, ov_message(exc)))
        if self._compiled is None:
            raise RuntimeLoadError("openvino could not compile %s for %s: %s"
                                   % (model_path, "/".join(chain), ov_message(last_error)))
        compiled = self._compiled
        self.providers_used = [str(d) for d in _property(compiled, "EXECUTION_DEVICES") or [device]]
        self.threads = _property(compiled, "INFERENCE_NUM_THREADS") or config.get("INFERENCE_NUM_THREADS") \
            or "default"
        hint = _property(compiled, "PERFORMANCE_HINT")
        self.performance_hint = getattr(hint, "name", None) or (str(hint) if hint is not None else None)
        precision = _property(compiled, "INFERENCE_PRECISION_HINT")
        self.inference_precision = precision.get_type_name() if hasattr(precision, "get_type_name") else precision
        self._request = compiled.create_infer_request()
        self._in_dtypes = {}
        for port in compiled.inputs:
            dtype = port.get_element_type().to_dtype()
            for name in port.get_names():
                self._in_dtypes[name] = dtype
        # Outputs by name: an output that carries several tensor names (OpenVINO merges the names
        # of tensors it folds together) is returned under each, so the manifest's name finds it;
        # an unnamed one (convert_model of a torch module) as the torch runtime names it.
        self._out_plan = []
        outputs = compiled.outputs
        for i, port in enumerate(outputs):
            unnamed = "output" if len(outputs) == 1 else "output_%d" % i
            for name in sorted(port.get_names()) or [unnamed]:
                self._out_plan.append((name, i))

    def _device_chain(self, settings):
        """The devices to try, in order, with the skipped ones noted in fallbacks."""
        if settings.get("devices"):
            requested = [str(d).upper() for d in settings["devices"]]
        else:
            requested = []
            for p in settings.get("providers") or [CPU]:
                p = str(p)
                if p.lower() in ("cpuexecutionprovider", "cpu"):
                    requested.append(CPU)
                elif p.endswith("ExecutionProvider"):
                    self.fallbacks.append("%s is an onnxruntime provider, not an OpenVINO device: skipped" % p)
                else:
                    requested.append(p.upper())
        self.providers_requested = requested
        chain = []
        for d in requested:
            if d.split(":")[0] in VIRTUAL or _present(d, self.providers_available):
                if d not in chain:
                    chain.append(d)
            else:
                self.fallbacks.append("%s not available on this device (has: %s)"
                                      % (d, ", ".join(self.providers_available) or "none"))
        if CPU not in chain:
            chain.append(CPU)
        return chain

    def _config(self, settings):
        hint = str(settings.get("performance_hint") or "LATENCY").upper()
        if hint not in HINTS:
            self.fallbacks.append("unknown performance_hint %r: LATENCY used (knows %s)" % (hint, ", ".join(HINTS)))
            hint = "LATENCY"
        config = {"PERFORMANCE_HINT": hint}
        key = str(settings.get("inference_precision") or "f32").lower()
        if key not in PRECISIONS:
            self.fallbacks.append("unknown inference_precision %r: f32 used" % key)
            key = "f32"
        if PRECISIONS[key]:
            config["INFERENCE_PRECISION_HINT"] = PRECISIONS[key]
        threads = thread_setting(settings)
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        return config

    def _supported(self, core, device, config):
        """config less the keys this device does not take (noted in fallbacks); a meta-device
        gets it whole, to hand on to the devices under it."""
        base = device.split(":")[0].split(".")[0]
        if base in VIRTUAL:
            return dict(config)
        try:
            supported = set(core.get_property(base, "SUPPORTED_PROPERTIES"))
        except Exception:
            return dict(config)
        kept = {}
        for key, value in config.items():
            if key in supported:
                kept[key] = value
            else:
                self.fallbacks.append("%s=%s not supported by %s: ignored" % (key, value, device))
        return kept

    def run(self, feeds):
        inputs = {}
        for name, value in feeds.items():
            dtype = self._in_dtypes.get(name)
            if dtype is None:
                raise RuntimeLoadError("the model has no input %r (it has %s)"
                                       % (name, ", ".join(sorted(self._in_dtypes))))
            inputs[name] = contiguous(value, dtype)
        result = self._request.infer(inputs, share_inputs=True)  # outputs are copies
        return dict((name, result[i]) for name, i in self._out_plan)

    def describe(self):
        info = Runtime.describe(self)
        info.update(performance_hint=self.performance_hint, inference_precision=self.inference_precision)
        return info

    @classmethod
    def installed_info(cls):
        try:
            ov = importlib.import_module("openvino")
            return {"version": dist_version("openvino") or getattr(ov, "__version__", "unknown"),
                    "devices": list(ov.Core().available_devices)}
        except Exception:
            return None


def _present(device, available):
    """GPU is present when GPU, GPU.0 ... is; GPU.1 only when GPU.1 is."""
    return any(a == device or a.split(".")[0] == device for a in available)


def _property(compiled, key):
    try:
        return compiled.get_property(key)
    except Exception:
        return None


def ov_message(exc):
    """OpenVINO's error without its 'Exception from src/...cpp:N:' lines, on one line."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception from ")]
    return short(" ".join(lines) or exc)
