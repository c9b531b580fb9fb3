"""What every runtime shares: the two errors, the state a report describes, small helpers.

Standard library only: nothing here imports a runtime library.
"""
import importlib


class RuntimeMissing(Exception):
    """The runtime the bundle needs is not installed on this machine."""


class RuntimeLoadError(Exception):
    """The runtime is installed but could not load the model."""


class Runtime(object):
    """One runtime behind the agent's interface.

    load(model_path, settings) reads `model/<file>` with the manifest's runtime_settings;
    run(feeds) maps {input name: array} to {output name: array}; describe() is the report's
    `runtime` section. A subclass sets `name` and `install_hint`, fills the state below in
    load(), and may answer installed_info() for the device facts.
    """
    name = None
    install_hint = None

    def __init__(self):
        self.version = None
        self.providers_requested = []   # providers / delegates / devices the settings asked for
        self.providers_available = []   # what this machine has
        self.providers_used = []        # what really runs, first = the one the probe reports
        self.fallbacks = []             # why a requested one was skipped
        self.threads = None

    def load(self, model_path, settings):
        raise NotImplementedError

    def run(self, feeds):
        raise NotImplementedError

    def describe(self):
        return {"name": self.name, "version": self.version,
                "providers_requested": self.providers_requested,
                "providers_available": self.providers_available,
                "providers_used": self.providers_used,
                "provider": self.providers_used[0] if self.providers_used else None,
                "fallbacks": self.fallbacks, "threads": self.threads}

    @classmethod
    def installed_info(cls):
        """{version, ...} when this machine can run the runtime, else None. Never raises."""
        return None

    @classmethod
    def import_library(cls, module):
        """Import the runtime's library, or raise RuntimeMissing with the install hint."""
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            raise RuntimeMissing("%s is not installed (%s) (fix: %s)" % (module, exc, cls.install_hint))


def thread_setting(settings):
    """settings['threads'] as an int; 0 or absent = the runtime's default."""
    return max(0, int(settings.get("threads") or 0))


def contiguous(value, dtype=None):
    """value as a C-contiguous numpy array (of dtype), 0-d arrays kept 0-d
    (np.ascontiguousarray would make them 1-d)."""
    import numpy as np
    value = np.asarray(value, dtype=dtype)
    return value if value.flags["C_CONTIGUOUS"] else value.copy(order="C")


def short(exc):
    """An exception's message on one line, at most 300 characters."""
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def dist_version(package):
    """The installed distribution's version, or None."""
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8 has no importlib.metadata
        return None
    try:
        return metadata.version(package)
    except Exception:
        return None
