"""One interface over the model runtimes. Each runtime is imported only when used.

A runtime loads `model/<file>` with the manifest's runtime settings and runs feeds
({input name: array}) to outputs ({output name: array}). It reports its name, version,
the providers/delegates that really ran, and the thread setting.
"""
import importlib
import time


class RuntimeMissing(Exception):
    """The runtime the bundle needs is not installed on this machine."""


class RuntimeLoadError(Exception):
    """The runtime is installed but could not load the model."""


class OnnxRuntime(object):
    name = "onnxruntime"
    module = "onnxruntime"
    install_hint = "pip install onnxruntime (or onnxruntime-gpu / JetPack's wheel on Jetson)"

    def __init__(self):
        self.version = None
        self.providers_requested = []
        self.providers_available = []
        self.providers_used = []
        self.fallbacks = []
        self.threads = None
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

    def run(self, feeds):
        names = [o.name for o in self._session.get_outputs()]
        values = self._session.run(names, feeds)
        return dict(zip(names, values))

    def describe(self):
        return {"name": self.name, "version": self.version,
                "providers_requested": self.providers_requested,
                "providers_available": self.providers_available,
                "providers_used": self.providers_used,
                "provider": self.providers_used[0] if self.providers_used else None,
                "fallbacks": self.fallbacks, "threads": self.threads}


def _short(exc):
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


RUNTIMES = {"onnxruntime": OnnxRuntime}


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
    return found
