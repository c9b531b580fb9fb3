"""The model runtimes behind one interface, one module each, imported only when used.

    create(name)                       a runtime object (RuntimeMissing for an unknown name)
    load_timed(name, path, settings)   (loaded runtime, seconds the load took)
    installed()                        {runtime: {version, ...}} for what this machine can run
    RuntimeMissing, RuntimeLoadError   the runtime is absent / present but cannot load the model
    RUNTIMES                           name -> runtime class (a mapping that imports on lookup)

A runtime loads `model/<file>` with the manifest's runtime settings and runs feeds
({input name: array}) to outputs ({output name: array}). It reports its name, version, the
providers/delegates/devices that really ran, why others were skipped, and the thread setting
(agent/runtimes/base.py). Every runtime module imports only the standard library at import
time; its library (onnxruntime, LiteRT, torch, openvino) is imported inside load().
"""
import importlib
import time

from collections.abc import Mapping

from .base import RuntimeLoadError, RuntimeMissing  # noqa: F401 (public names)

# runtime name (the manifest's "runtime") -> (module in this package, class)
REGISTRY = {"onnxruntime": ("ort", "OnnxRuntime"),
            "litert": ("litert", "LiteRtRuntime"),
            "torch": ("torchscript", "TorchRuntime"),
            "openvino": ("openvino_rt", "OpenVinoRuntime")}


def runtime_class(name):
    """The class of runtime `name`, importing its module now."""
    try:
        module, cls = REGISTRY[name]
    except (KeyError, TypeError):
        raise RuntimeMissing("this agent does not know runtime %r (knows: %s) (fix: rebuild the "
                             "bundle with a newer edgepack)" % (name, ", ".join(sorted(REGISTRY))))
    return getattr(importlib.import_module("." + module, __name__), cls)


class _Runtimes(Mapping):
    """name -> runtime class; a lookup imports that one runtime's module, `in` imports nothing."""

    def __getitem__(self, name):
        if name not in REGISTRY:
            raise KeyError(name)
        return runtime_class(name)

    def __contains__(self, name):
        return name in REGISTRY

    def __iter__(self):
        return iter(REGISTRY)

    def __len__(self):
        return len(REGISTRY)


RUNTIMES = _Runtimes()


def create(name):
    return runtime_class(name)()


def load_timed(name, model_path, settings):
    rt = create(name)
    t0 = time.perf_counter()
    rt.load(model_path, settings)
    return rt, time.perf_counter() - t0


def installed(only=None):
    """Which known runtimes this machine can run, with versions and providers/delegates/devices
    (`only`: probe just these names; importing every runtime can take seconds where torch is)."""
    found = {}
    for name in REGISTRY:
        if only is not None and name not in only:
            continue
        info = runtime_class(name).installed_info()
        if info is not None:
            found[name] = info
    return found


def __getattr__(attr):
    """`from agent.runtimes import LiteRtRuntime` (and the other classes) imports that module only."""
    for name, (_, cls) in REGISTRY.items():
        if cls == attr:
            return runtime_class(name)
    raise AttributeError("module %r has no attribute %r" % (__name__, attr))
