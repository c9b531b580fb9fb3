"""TF-Lite models on LiteRT (ai-edge-litert), else tflite-runtime, else tensorflow.lite.

Named litert.py, not after any of those packages, so that the module is never mistaken for
the library it imports (the library is imported only inside load(), when a bundle needs it).
"""
import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile

from .base import Runtime, RuntimeLoadError, RuntimeMissing, dist_version, short, thread_setting


class LiteRtRuntime(Runtime):
    """settings: delegates (e.g. [gpu, xnnpack]; one whose library or device is absent is
    skipped and reported in fallbacks; XNNPACK is the interpreter's own CPU path), threads.

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
        Runtime.__init__(self)
        self.implementation = None
        self.io_quantized = False
        self._it = None
        self._in_cache = None

    @classmethod
    def find(cls):
        """(module with Interpreter and load_delegate, package name, version) or raise."""
        errors = []
        for modname, package in cls.CANDIDATES:
            try:
                mod = importlib.import_module(modname)
            except Exception as exc:  # ImportError, or a broken install
                errors.append("%s: %s" % (package, short(exc)))
                continue
            version = dist_version(package) or getattr(mod, "__version__", None) or "unknown"
            if package == "tensorflow":
                version = getattr(importlib.import_module("tensorflow"), "__version__", version)
            return mod, package, version
        raise RuntimeMissing("no TF-Lite runtime is installed (%s) (fix: %s)"
                             % ("; ".join(errors), cls.install_hint))

    def load(self, model_path, settings):
        mod, package, self.version = self.find()
        self.implementation = package
        threads = thread_setting(settings)
        self.threads = threads or "default"
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
            loaded, why = load_delegate(mod, libs)
            if loaded is None:
                self.fallbacks.append("%s delegate not available on this device (%s)" % (d, why))
            else:
                delegates.append(loaded)
                self.providers_available.append(d)
                self.providers_used.append(d)
        kwargs = {"model_path": model_path}
        if threads:
            kwargs["num_threads"] = threads
        if delegates:
            kwargs["experimental_delegates"] = delegates
        try:
            with _info_lines_dropped():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                self._it = mod.Interpreter(**kwargs)
                self._it.allocate_tensors()
        except Exception as exc:
            raise RuntimeLoadError("%s could not load %s: %s" % (package, model_path, short(exc)))
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
        if self._in_cache is None:
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
        info = Runtime.describe(self)
        info.update(implementation=self.implementation, delegates=self.providers_used,
                    io_quantization="int8 I/O quantized by the agent" if self.io_quantized else None)
        return info

    @classmethod
    def installed_info(cls):
        for modname, package in cls.CANDIDATES:
            if dist_version(package) or (package != "tensorflow" and _importable(modname)):
                return {"version": dist_version(package) or "unknown", "implementation": package,
                        "delegates": ["xnnpack"] + cls.delegates_present()}
        return None

    @classmethod
    def delegates_present(cls):
        """The external delegates whose library this machine can load (gpu, edgetpu)."""
        import ctypes

        found = []
        for name, libs in sorted(cls.DELEGATE_LIBS.items()):
            for lib in libs:
                try:
                    ctypes.CDLL(lib)
                except OSError:
                    continue
                found.append(name)
                break
        return found


def load_delegate(mod, libs):
    """(delegate, None) from the first of libs that loads, else (None, why the last one failed).

    LiteRT's Delegate.__init__ (as tflite-runtime's and tf.lite's) opens the library before it
    sets `_library`, and its __del__ reads `self._library`: when the library is absent, the
    half-made Delegate raises AttributeError from __del__ whenever it is collected, and Python
    prints "Exception ignored in Delegate.__del__" with a traceback on stderr (at exit, as the
    stored exception's traceback keeps it alive). So the agent builds delegates from a subclass
    whose __del__ skips what was never made, and keeps only the message of a failure.
    """
    cls = _safe_delegate_class(mod)
    why = None
    for lib in libs:
        try:
            return (cls(lib) if cls is not None else mod.load_delegate(lib)), None
        except ValueError as exc:  # the library opened but made no delegate (no device behind it)
            why = short("failed to load delegate from %s: %s" % (lib, exc))
        except Exception as exc:  # the library is absent
            why = short(exc)
    return None, why


_SAFE_DELEGATES = {}


def _safe_delegate_class(mod):
    """A subclass of the implementation's Delegate with a __del__ safe on a half-made object."""
    base = getattr(mod, "Delegate", None)
    if base is None:  # tensorflow.lite: the class lives beside its Interpreter
        interpreter = getattr(mod, "Interpreter", None)
        base = getattr(sys.modules.get(getattr(interpreter, "__module__", None) or ""), "Delegate", None)
    if not isinstance(base, type):
        return None
    if base not in _SAFE_DELEGATES:
        def __del__(self):
            if getattr(self, "_library", None) is None:
                return  # the library never opened: nothing to destroy
            if getattr(self, "_delegate_ptr", None) is None:
                self._library = None  # the library opened but made no delegate
                return
            base.__del__(self)
        _SAFE_DELEGATES[base] = type("SafeDelegate", (base,), {"__del__": __del__})
    return _SAFE_DELEGATES[base]


@contextlib.contextmanager
def _info_lines_dropped():
    """Native stderr (fd 2) into a temporary file while the interpreter is made; then written back
    less the runtime's "INFO: " lines, which its C++ logger prints with no switch to turn them off.
    Warnings and errors still reach stderr. Where fd 2 cannot be redirected, nothing changes."""
    tmp = saved = None
    try:
        sys.stderr.flush()
        tmp = tempfile.TemporaryFile()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        if tmp is not None:
            tmp.close()
        yield
        return
    try:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode("utf-8", "replace").splitlines(True)
                    if not line.startswith("INFO: ")]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
    finally:
        os.close(saved)
        tmp.close()


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


def _importable(modname):
    try:
        return importlib.util.find_spec(modname.split(".")[0]) is not None
    except Exception:
        return False
