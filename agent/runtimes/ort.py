"""ONNX models on onnxruntime, through its execution-provider chain.

Named ort.py, not onnxruntime.py, so that the module is never mistaken for the library it
imports (onnxruntime is imported only inside load(), when a bundle needs it).
"""
import importlib

from .base import Runtime, RuntimeLoadError, short, thread_setting

CPU = "CPUExecutionProvider"


class OnnxRuntime(Runtime):
    """settings: providers (tried in order; one absent or failing to start is skipped and
    reported in fallbacks; the CPU provider always ends the chain), threads (intra-op),
    graph_optimization (disable | basic | extended | all)."""
    name = "onnxruntime"
    install_hint = "pip install onnxruntime (or onnxruntime-gpu / JetPack's wheel on Jetson)"

    def __init__(self):
        Runtime.__init__(self)
        self._session = None
        self._output_names = []

    def load(self, model_path, settings):
        ort = self.import_library("onnxruntime")
        self.version = getattr(ort, "__version__", "unknown")
        self.providers_available = list(ort.get_available_providers())
        requested = list(settings.get("providers") or [CPU])
        self.providers_requested = requested
        chain = [p for p in requested if p in self.providers_available]
        for p in requested:
            if p not in self.providers_available:
                self.fallbacks.append("%s not available on this device" % p)
        if CPU not in chain:
            chain.append(CPU)
        opts = ort.SessionOptions()
        threads = thread_setting(settings)
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.threads = threads or "default"
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
                self.fallbacks.append("%s failed to start: %s" % (chain[0], short(exc)))
                chain = chain[1:]
        if self._session is None:
            raise RuntimeLoadError("onnxruntime could not load %s: %s" % (model_path, short(last_error)))
        self.providers_used = list(self._session.get_providers())
        self._output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds):
        names = self._output_names
        return dict(zip(names, self._session.run(names, feeds)))

    @classmethod
    def installed_info(cls):
        try:
            ort = importlib.import_module("onnxruntime")
            return {"version": getattr(ort, "__version__", "unknown"),
                    "providers": list(ort.get_available_providers())}
        except Exception:
            return None
