"""Device facts and the self-test report (DESIGN section 4)."""
import datetime
import os
import platform
import socket
import sys

from . import __version__ as AGENT_VERSION

REPORT_SCHEMA = 1


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def memory_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def peak_rss_bytes():
    """This process's peak resident memory. Linux: VmHWM of /proc/self/status, the peak of this
    program's own memory (ru_maxrss also counts what the parent held before exec: run from a big
    process such as `edgepack tune`, it reported the parent's size)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak if sys.platform == "darwin" else peak * 1024


def facts(include_runtimes=True, only=None):
    info = {"hostname": socket.gethostname(), "arch": platform.machine(),
            "os": "%s %s" % (platform.system(), platform.release()),
            "python": platform.python_version(), "python_executable": sys.executable,
            "cpu_count": os.cpu_count(), "memory_bytes": memory_bytes(),
            "agent_version": AGENT_VERSION}
    try:
        import numpy
        info["numpy"] = numpy.__version__
    except ImportError:
        info["numpy"] = None
    if include_runtimes:
        from . import runtimes
        info["runtimes"] = runtimes.installed(only)
    return info


def new_report(bundle_dir):
    return {"report_schema": REPORT_SCHEMA, "agent_version": AGENT_VERSION,
            "started": now_iso(), "finished": None,
            "bundle": {"path": os.path.abspath(bundle_dir)}, "bundle_id": None,
            "device": facts(include_runtimes=False),
            "integrity": None, "runtime": None, "parity": None, "latency": None,
            "peak_rss_bytes": None,
            "verdict": {"passed": False, "status": "error", "reasons": []}}
