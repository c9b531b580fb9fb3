"""One interface over the model runtimes. Each runtime is imported only when used.

A runtime loads `model/<file>` with the manifest's runtime settings and runs feeds
({input name: array}) to outputs ({output name: array}). It reports its name, version,
the providers/delegates that really ran, and the thread setting.
"""
import importlib
import importlib.util
import time


class RuntimeMissing(Exception):
    """The runtime the bundle needs is not installed on this machine."""


class RuntimeLoadError(Exception):
    """The runtime is installed but could not load the model."""


class _Runtime(object):
    """What every runtime reports: version, providers/delegates asked for, present and used,
    why others were skipped (fallbacks), and the thread setting."""

    def __init__(self):
        self.version = None
        self.providers_requested = []
        self.providers_available = []
        self.providers_used = []
        self.fallbacks = []
        self.threads = None

    def describe(self):
        return {"name": self.name, "version": self.version,
                "providers_requested": self.providers_requested,
                "providers_available": self.providers_available,
                "providers_used": self.providers_used,
                "provider": self.providers_used[0] if self.providers_used else None,
                "fallbacks": self.fallbacks, "threads": self.threads}


class OnnxRuntime(_Runtime):
    name = "onnxruntime"
    module = "onnxruntime"
    install_hint = "pip install onnxruntime (or onnxruntime-gpu / JetPack's wheel on Jetson)"

    def __init__(self):
        _Runtime.__init__(self)
        self._session = None

    def load(self, model_path, settings):
        try:
            ort = importlib.import_module("onnxruntime")
        except ImportError as exc:
            raise RuntimeMissing("onnxruntime is not installed (%s) (fix: %s)"
                                 % (exc, self.install_hint))
        self.version = getattr(ort, "__version__", "unknown")
        self.providers_available = list(ort.get_available_providers())
        requested = list(settings.get("providers") or ["CPUExecutionProvider"])
        self.providers_requested = requested
        chain = [p for p in requested if p in self.providers_available]
        skipped = [p for p in requested if p not in self.providers_available]
        for p in skipped:
            self.fallbacks.append("%s not available on this device" % p)
        if "CPUExecutionProvider" not in chain:
            chain.append("CPUExecutionProvider")
        opts = ort.SessionOptions()
        threads = int(settings.get("threads") or 0)
        if threads > 0:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.threads = threads if threads > 0 else "default"
        level = str(settings.get("graph_optimization") or "all").lower()
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        opts.graph_optimization_level = levels.get(level, levels["all"])
        opts.log_severity_level = 3
        last_error = None
        # Try the requested chain, then drop the first provider each time it fails to start.
        while chain:
            try:
                self._session = ort.InferenceSession(model_path, sess_options=opts, providers=chain)
                break
            except Exception as exc:  # a provider that is present but cannot initialise
                last_error = exc
                if len(chain) == 1:
                    break
                self.fallbacks.append("%s failed to start: %s" % (chain[0], _short(exc)))
                chain = chain[1:]
        if self._session is None:
            raise RuntimeLoadError("onnxruntime could not load %s: %s" % (model_path, _short(last_error)))
        self.providers_used = list(self._session.get_providers())
        self._output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds):
        names = self._output_names
        return dict(zip(names, self._session.run(names, feeds)))


def _quantize_input(value, detail):
    """float feed -> the integer input of a fully quantized model, with the model's own scale."""
    import numpy as np
    dtype = detail["dtype"]
    scale, zero = detail.get("quantization") or (0.0, 0)
    value = np.asarray(value)
    if np.dtype(dtype).kind in "iu" and value.dtype.kind == "f" and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(value / scale) + zero, info.min, info.max).astype(dtype)
    return value.astype(dtype, copy=False)


def _dequantize_output(value, detail):
    import numpy as np
    scale, zero = detail.get("quantization") or (0.0, 0)
    if np.asarray(value).dtype.kind in "iu" and scale:
        return ((value.astype(np.float32) - zero) * scale).astype(np.float32)
    return value


class LiteRtRuntime(_Runtime):
    """TF-Lite models: LiteRT (ai-edge-litert), then tflite-runtime, then tensorflow.lite.

    Integer (int8/uint8) inputs and outputs of fully quantized models are quantized and
    dequantized here with the model's own scale and zero point, so the bundle's float
    reference vectors compare like with like.
    """
    name = "litert"
    install_hint = "pip install ai-edge-litert (or tflite-runtime, or tensorflow)"
    CANDIDATES = (("ai_edge_litert.interpreter", "ai-edge-litert"),
                  ("tflite_runtime.interpreter", "tflite-runtime"),
                  ("tensorflow.lite", "tensorflow"))
    DELEGATE_LIBS = {"gpu": ("libtensorflowlite_gpu_delegate.so",),
                     "edgetpu": ("libedgetpu.so.1", "libedgetpu.1.dylib", "edgetpu.dll")}

    def __init__(self):
        _Runtime.__init__(self)
        self.implementation = None
        self.io_quantized = False
        self._it = None

    @classmethod
    def find(cls):
        """(module with Interpreter and load_delegate, package name, version) or raise."""
        errors = []
        for modname, package in cls.CANDIDATES:
            try:
                mod = importlib.import_module(modname)
            except Exception as exc:  # ImportError, or a broken install
                errors.append("%s: %s" % (package, _short(exc)))
                continue
            version = _dist_version(package) or getattr(mod, "__version__", None) or "unknown"
            if package == "tensorflow":
                version = getattr(importlib.import_module("tensorflow"), "__version__", version)
            return mod, package, version
        raise RuntimeMissing("no TF-Lite runtime is installed (%s) (fix: %s)"
                             % ("; ".join(errors), cls.install_hint))

    def load(self, model_path, settings):
        mod, package, self.version = self.find()
        self.implementation = package
        threads = int(settings.get("threads") or 0)
        self.threads = threads if threads > 0 else "default"
        requested = [str(d).lower() for d in (settings.get("delegates") or [])]
        self.providers_requested = requested
        self.providers_available = ["cpu", "xnnpack"]
        delegates = []
        for d in requested:
            if d in ("xnnpack", "cpu"):
                continue  # XNNPACK is the default CPU path of the interpreter
            libs = self.DELEGATE_LIBS.get(d)
            if not libs:
                self.fallbacks.append("unknown delegate %r ignored" % d)
                continue
            loaded = None
            for lib in libs:
                try:
                    loaded = mod.load_delegate(lib)
                    break
                except Exception as exc:  # library absent or device missing
                    last = exc
            if loaded is None:
                self.fallbacks.append("%s delegate not available on this device (%s)" % (d, _short(last)))
            else:
                delegates.append(loaded)
                self.providers_available.append(d)
                self.providers_used.append(d)
        kwargs = {"model_path": model_path}
        if threads > 0:
            kwargs["num_threads"] = threads
        if delegates:
            kwargs["experimental_delegates"] = delegates
        try:
            self._it = mod.Interpreter(**kwargs)
            self._it.allocate_tensors()
        except Exception as exc:
            raise RuntimeLoadError("%s could not load %s: %s" % (package, model_path, _short(exc)))
        self.providers_used.append("cpu (xnnpack)")
        self._inputs = self._it.get_input_details()
        self._outputs = self._it.get_output_details()
        self._sig_in = {}
        self._sig_out = {}
        try:
            sigs = self._it.get_signature_list()
        except Exception:
            sigs = {}
        if len(sigs) == 1:  # map signature names (what the manifest uses) to tensor indices
            key = list(sigs)[0]
            runner = self._it.get_signature_runner(key)
            self._sig_in = dict((k, v["index"]) for k, v in runner.get_input_details().items())
            self._sig_out = dict((k, v["index"]) for k, v in runner.get_output_details().items())
            del runner  # a live signature runner makes invoke() refuse to run ("reference to internal data")
        self.io_quantized = any(d["dtype"].__name__ in ("int8", "uint8") and (d.get("quantization") or (0,))[0]
                                for d in self._inputs + self._outputs)

    def _detail(self, details, sig_map, name, position):
        if name in sig_map:
            for d in details:
                if d["index"] == sig_map[name]:
                    return d
        for d in details:
            if d["name"] == name or d["name"].endswith("_" + name) or d["name"].split(":")[0] == name:
                return d
        return details[position] if position < len(details) else None

    def _resolve(self):
        """Input/output details by name, resolved once (and again after a resize)."""
        self._in_cache = {}
        names = list(self._sig_out) or [d["name"] for d in self._outputs]
        self._out_plan = [(name, self._detail(self._outputs, self._sig_out, name, i))
                          for i, name in enumerate(names)]
        self._out_index = [(name, d["index"]) for name, d in self._out_plan]

    def run(self, feeds):
        if getattr(self, "_in_cache", None) is None:
            self._resolve()
        quantized = self.io_quantized
        cache = self._in_cache
        set_tensor = self._it.set_tensor
        for i, (name, value) in enumerate(feeds.items()):
            entry = cache.get(name)
            if entry is None:
                entry = self._input_entry(name, i)
            index, shape, dtype, d = entry
            if quantized:
                value = _quantize_input(value, d)
            elif value.dtype != dtype:
                value = value.astype(dtype)
            if value.shape != shape:
                self._it.resize_tensor_input(index, list(value.shape))
                self._it.allocate_tensors()
                self._inputs = self._it.get_input_details()
                self._outputs = self._it.get_output_details()
                self._resolve()
                index = self._input_entry(name, i)[0]
            set_tensor(index, value)
        self._it.invoke()
        get = self._it.get_tensor
        if quantized:
            return dict((name, _dequantize_output(get(d["index"]), d)) for name, d in self._out_plan)
        return dict((name, get(index)) for name, index in self._out_index)

    def _input_entry(self, name, position):
        import numpy as np
        d = self._detail(self._inputs, self._sig_in, name, position)
        if d is None:
            raise RuntimeLoadError("the model has no input %r" % name)
        entry = (d["index"], tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]), d)
        self._in_cache[name] = entry
        return entry

    def describe(self):
        info = _Runtime.describe(self)
        info.update(implementation=self.implementation, delegates=self.providers_used,
                    io_quantization="int8 I/O quantized by the agent" if self.io_quantized else None)
        return info


class TorchRuntime(_Runtime):
    """TorchScript models (torch.jit.load). providers: e.g. [cuda, cpu], tried in order.

    A float16 bundle runs in half precision on CUDA; on a device without CUDA it falls back to
    float32 on the CPU (reported in fallbacks). Inputs and outputs stay float32 at the interface.
    """
    name = "torch"
    install_hint = "pip install torch (JetPack's wheel on Jetson)"

    def __init__(self):
        _Runtime.__init__(self)
        self._model = None
        self._device = "cpu"
        self._half = False

    def load(self, model_path, settings):
        try:
            torch = importlib.import_module("torch")
        except ImportError as exc:
            raise RuntimeMissing("torch is not installed (%s) (fix: %s)" % (exc, self.install_hint))
        self._torch = torch
        self.version = getattr(torch, "__version__", "unknown")
        self.providers_available = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        aliases = {"cudaexecutionprovider": "cuda", "tensorrtexecutionprovider": "cuda",
                   "cpuexecutionprovider": "cpu", "gpu": "cuda"}
        requested = [aliases.get(str(p).lower(), str(p).lower()) for p in (settings.get("providers") or ["cpu"])]
        self.providers_requested = requested
        device = None
        for p in requested:
            if p in self.providers_available:
                device = p
                break
            self.fallbacks.append("%s not available on this device" % p)
        device = device or "cpu"
        threads = int(settings.get("threads") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        self.threads = threads if threads > 0 else torch.get_num_threads()
        try:
            model = torch.jit.load(model_path, map_location=device)
        except Exception as exc:
            raise RuntimeLoadError("torch could not load %s: %s" % (model_path, _short(exc)))
        model.eval()
        half = str(settings.get("weights_dtype") or "") == "float16" or _has_half(model)
        if half and device == "cpu" and not settings.get("half_on_cpu"):
            model = model.float()
            self.fallbacks.append("float16 model run as float32 on the CPU (no CUDA)")
        self._half = half and (device != "cpu" or bool(settings.get("half_on_cpu")))
        self._model = model
        self._device = device
        try:  # forward's argument names: feeds are matched by name, not by dict order
            self._names = [a.name for a in model.forward.schema.arguments[1:]]
        except Exception:
            self._names = []
        self.providers_used = [device + (" (float16)" if self._half else "")]

    def run(self, feeds):
        torch = self._torch
        args = []
        values = list(feeds.values())
        if self._names and set(feeds) == set(self._names[:len(feeds)]):
            values = [feeds[n] for n in self._names[:len(feeds)]]
        for value in values:
            t = torch.from_numpy(_contiguous(value)).to(self._device)
            if self._half and t.is_floating_point():
                t = t.half()
            args.append(t)
        with torch.no_grad():
            out = self._model(*args)
        return _torch_outputs(out)


def _contiguous(value):
    import numpy as np
    return np.ascontiguousarray(value)


def _has_half(model):
    for p in model.parameters():
        return p.dtype.__repr__().endswith("float16")
    return False


def _torch_outputs(out):
    def arr(t):
        t = t.detach().cpu()
        if t.is_floating_point() and str(t.dtype) != "torch.float32":
            t = t.float()
        return t.numpy()
    if isinstance(out, (tuple, list)):
        if len(out) == 1:
            return {"output": arr(out[0])}
        return dict(("output_%d" % i, arr(o)) for i, o in enumerate(out))
    if isinstance(out, dict):
        return dict((str(k), arr(v)) for k, v in out.items())
    return {"output": arr(out)}


def _dist_version(package):
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8 has no importlib.metadata
        return None
    try:
        return metadata.version(package)
    except Exception:
        return None


def _short(exc):
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


RUNTIMES = {"onnxruntime": OnnxRuntime, "litert": LiteRtRuntime, "torch": TorchRuntime}


def create(name):
    cls = RUNTIMES.get(name)
    if cls is None:
        raise RuntimeMissing("this agent does not know runtime %r (knows: %s) (fix: rebuild the "
                             "bundle with a newer edgepack)" % (name, ", ".join(sorted(RUNTIMES))))
    return cls()


def load_timed(name, model_path, settings):
    rt = create(name)
    t0 = time.perf_counter()
    rt.load(model_path, settings)
    return rt, time.perf_counter() - t0


def installed():
    """Which known runtimes this machine can import, with versions and providers/delegates."""
    found = {}
    try:
        ort = importlib.import_module("onnxruntime")
        found["onnxruntime"] = {"version": getattr(ort, "__version__", "unknown"),
                                "providers": list(ort.get_available_providers())}
    except Exception:
        pass
    for modname, package in LiteRtRuntime.CANDIDATES:
        if _dist_version(package) or (package != "tensorflow" and _importable(modname)):
            found["litert"] = {"version": _dist_version(package) or "unknown", "implementation": package}
            break
    if _dist_version("torch"):
        found["torch"] = {"version": _dist_version("torch")}
    return found


def _importable(modname):
    try:
        return importlib.util.find_spec(modname.split(".")[0]) is not None
    except Exception:
        return False
