"""TorchScript models on torch (torch.jit.load).

Named torchscript.py, not torch.py, so that the module is never mistaken for the library it
imports (torch is imported only inside load(), when a bundle needs it).
"""
from .base import Runtime, RuntimeLoadError, contiguous, dist_version, short, thread_setting

ALIASES = {"cudaexecutionprovider": "cuda", "tensorrtexecutionprovider": "cuda",
           "cpuexecutionprovider": "cpu", "gpu": "cuda"}


class TorchRuntime(Runtime):
    """providers: e.g. [cuda, cpu], tried in order (ONNX Runtime's provider names are understood).

    A float16 bundle runs in half precision on CUDA; on a device without CUDA it falls back to
    float32 on the CPU (reported in fallbacks). Inputs and outputs stay float32 at the interface.
    """
    name = "torch"
    install_hint = "pip install torch (JetPack's wheel on Jetson)"

    def __init__(self):
        Runtime.__init__(self)
        self._model = None
        self._device = "cpu"
        self._half = False
        self._names = []

    def load(self, model_path, settings):
        torch = self.import_library("torch")
        self._torch = torch
        self.version = getattr(torch, "__version__", "unknown")
        self.providers_available = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        requested = [ALIASES.get(str(p).lower(), str(p).lower()) for p in (settings.get("providers") or ["cpu"])]
        self.providers_requested = requested
        device = None
        for p in requested:
            if p in self.providers_available:
                device = p
                break
            self.fallbacks.append("%s not available on this device" % p)
        device = device or "cpu"
        threads = thread_setting(settings)
        if threads:
            torch.set_num_threads(threads)
        self.threads = threads or torch.get_num_threads()
        try:
            model = torch.jit.load(model_path, map_location=device)
        except Exception as exc:
            raise RuntimeLoadError("torch could not load %s: %s" % (model_path, short(exc)))
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
            t = torch.from_numpy(contiguous(value)).to(self._device)
            if self._half and t.is_floating_point():
                t = t.half()
            args.append(t)
        with torch.no_grad():
            out = self._model(*args)
        return _torch_outputs(out)

    @classmethod
    def installed_info(cls):
        version = dist_version("torch")
        if not version:
            return None
        info = {"version": version}
        if "+cpu" not in version:          # a CUDA build: ask it (imports torch, so only then)
            try:
                import torch
                info["cuda"] = bool(torch.cuda.is_available())
            except Exception:  # noqa: BLE001 - a broken install still reports its version
                info["cuda"] = False
        return info


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
