"""The release layout on a device (DESIGN section 3) and the commands that change it.

    <root>/releases/<id>/          one folder per verified bundle (id = sha256 of manifest.json)
    <root>/current  -> releases/<id>   switched atomically (new symlink + rename) after a pass
    <root>/previous -> releases/<id>   what `rollback` returns to
    <root>/reports/<time>-<id>.json    every self-test's report
    <root>/stage/<id>/             a bundle being uploaded (never run from anywhere else)
    <root>/.lock                   per-root lock: one push or rollback at a time

Standard library only, Python >= 3.8. Every command prints one JSON object on stdout
({"ok": bool, ...}, with "error" when not ok) and returns 0 (ok), 1 (refused or a check
failed) or 2 (bad usage). The host runs this file either as `python3 -m agent <command>` or,
before any bundle is on the device, as `python3 -c <this source> <command>`: keep it
self-contained (no relative imports).
"""
import argparse
import errno
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid

try:
    import fcntl
except ImportError:  # Windows: no device layout here, but agent/manifest.py still imports this file
    fcntl = None

DEFAULT_ROOT = "~/.edgepack"
DEFAULT_KEEP = 3
LOCK_NAME = ".lock"
SIGNATURE_NAMESPACE = "edgepack"
SIGNATURE_PRINCIPAL = "edgepack"
FILE_MODE = 0o444  # releases are immutable once verified
DIR_MODE = 0o755
RELEASE_DIR_MODE = 0o555


class DeviceError(Exception):
    """A refusal with a reason the host shows to the user."""


# ---------------------------------------------------------------------------- helpers

def _emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def resolve_root(root):
    return os.path.abspath(os.path.expanduser(root or DEFAULT_ROOT))


def _valid_id(release_id):
    if not (isinstance(release_id, str) and len(release_id) == 64
            and all(c in "0123456789abcdef" for c in release_id)):
        raise DeviceError("bad release id %r: expected 64 lowercase hex digits" % (release_id,))
    return release_id


def _mkdir(path, mode=DIR_MODE):
    if not os.path.isdir(path):
        os.makedirs(path, mode)
    st = os.stat(path)
    if st.st_mode & 0o002:  # never world-writable
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)


def sha256_file(path, chunk=1 << 20):
    """The file's sha256 (hex). The one hashing routine of host and device: agent/manifest.py
    and the packager import it from here (this file must run alone, so it imports nothing)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def check_files(top, files):
    """(problems, files that match): every {rel: {sha256, size}} checked under top, in order.
    One routine for a stage on the device and a bundle's self-test (agent/manifest.py)."""
    problems, checked = [], 0
    for rel, meta in sorted(files.items()):
        path = os.path.join(top, *rel.split("/"))
        if os.path.islink(path):
            problems.append("%s: is a symbolic link" % rel)
        elif not os.path.isfile(path):
            problems.append("%s: missing" % rel)
        elif os.path.getsize(path) != meta.get("size"):
            problems.append("%s: size %d, manifest says %s" % (rel, os.path.getsize(path), meta.get("size")))
        else:
            digest = sha256_file(path)
            if digest != meta.get("sha256"):
                problems.append("%s: sha256 differs from the manifest (%s..., manifest says %s...)"
                                % (rel, digest[:12], str(meta.get("sha256"))[:12]))
            else:
                checked += 1
    return problems, checked


def _read_json(path):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _link_target_id(root, name):
    path = os.path.join(root, name)
    try:
        target = os.readlink(path)
    except OSError:
        return None
    rid = os.path.basename(target.rstrip("/"))
    return rid if os.path.isdir(os.path.join(root, "releases", rid)) else None


def _switch_link(root, name, release_id):
    """Point <root>/<name> at releases/<id>: new symlink, then rename over the old one."""
    tmp = os.path.join(root, ".%s.%s.tmp" % (name, uuid.uuid4().hex[:8]))
    os.symlink(os.path.join("releases", release_id), tmp)
    os.rename(tmp, os.path.join(root, name))


def _rmtree(path):
    """Remove a tree even where it was made read-only."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                os.chmod(full, 0o700)
    os.chmod(path, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def _now_stamp():
    t = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + ("%06dZ" % int((t % 1) * 1e6))


def _release_manifest_files(root, release_id):
    manifest = _read_json(os.path.join(root, "releases", release_id, "manifest.json"))
    files = (manifest or {}).get("files")
    return files if isinstance(files, dict) else {}


def safe_relpath(rel):
    """A manifest path that stays inside its bundle: relative, no '..', '.' or empty parts
    (a backslash counts as a separator). agent/manifest.py checks bundles with it too."""
    if not isinstance(rel, str) or not rel or rel.startswith(("/", "\\")):
        return False
    parts = rel.replace("\\", "/").split("/")
    return ".." not in parts and "" not in parts and "." not in parts


# ---------------------------------------------------------------------------- the lock

class Lock(object):
    """flock on <root>/.lock. Held by a process for as long as it lives (no stale locks).

    A push holds it through `lock`, a process that lives as long as the host's SSH channel
    (and heartbeats) last; the other commands then prove the push holds it with --lease TOKEN.
    """

    def __init__(self, root):
        self.root = root
        self.path = os.path.join(root, LOCK_NAME)
        self.fd = None

    def acquire(self, holder):
        _need_flock()
        _mkdir(self.root)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, OSError) as exc:
            os.close(fd)
            if getattr(exc, "errno", None) not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise DeviceError("device is busy: another edgepack push or rollback holds %s (%s); "
                              "wait for it to finish, then retry" % (self.path, self._describe()))
        self.fd = fd
        token = uuid.uuid4().hex
        info = {"token": token, "holder": holder, "pid": os.getpid(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode("utf-8"))
        return token

    def _describe(self):
        info = _read_json(self.path) or {}
        return "held by %s since %s, pid %s" % (info.get("holder", "?"), info.get("since", "?"),
                                                info.get("pid", "?"))

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def check_lease(root, token):
    """Raise unless the lock of root is held right now by the lease with this token."""
    _need_flock()
    path = os.path.join(root, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        raise DeviceError("no lock at %s: the push lost its lease (retry the push)" % path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, OSError):
            info = _read_json(path) or {}
            if info.get("token") != token:
                raise DeviceError("device lock is held by another push (%s since %s)"
                                  % (info.get("holder", "?"), info.get("since", "?")))
            return
        fcntl.flock(fd, fcntl.LOCK_UN)
        raise DeviceError("the push's lock lease on %s expired (link lost?): retry the push" % path)
    finally:
        os.close(fd)


def _need_flock():
    if fcntl is None:
        raise DeviceError("this platform has no flock (fcntl): the device layout needs Linux or macOS")


class _Guard(object):
    """With --lease: check it. Without: take the lock for this one command."""

    def __init__(self, root, token, holder):
        self.root, self.token, self.holder, self.lock = root, token, holder, None

    def __enter__(self):
        if self.token:
            check_lease(self.root, self.token)
        else:
            self.lock = Lock(self.root)
            self.lock.acquire(self.holder)
        return self

    def __exit__(self, *exc):
        if self.lock is not None:
            self.lock.release()
        return False


# ---------------------------------------------------------------------------- operations

def status(root):
    releases_dir = os.path.join(root, "releases")
    releases = []
    if os.path.isdir(releases_dir):
        for rid in sorted(os.listdir(releases_dir)):
            manifest = _read_json(os.path.join(releases_dir, rid, "manifest.json")) or {}
            releases.append({"id": rid, "name": manifest.get("name"),
                             "version": manifest.get("version"),
                             "profile": (manifest.get("profile") or {}).get("name")
                             if isinstance(manifest.get("profile"), dict) else manifest.get("profile"),
                             "activated": os.path.getmtime(os.path.join(releases_dir, rid))})
    current = _link_target_id(root, "current")
    info = {"root": root, "current": current, "previous": _link_target_id(root, "previous"),
            "releases": releases, "last_report": None, "hostname": socket.gethostname()}
    reports = _reports(root)
    chosen = None
    for name in reversed(reports):
        if current and name.endswith("-%s.json" % current):
            chosen = name
            break
    if chosen is None and reports:
        chosen = reports[-1]
    if chosen:
        rep = _read_json(os.path.join(root, "reports", chosen)) or {}
        info["last_report"] = {"file": chosen, "bundle_id": rep.get("bundle_id"),
                               "verdict": rep.get("verdict"),
                               "p50_ms": (rep.get("latency") or {}).get("p50_ms"),
                               "finished": rep.get("finished")}
    return info


def _reports(root):
    d = os.path.join(root, "reports")
    if not os.path.isdir(d):
        return []
    return sorted(n for n in os.listdir(d) if n.endswith(".json"))


def prepare(root, release_id):
    """Create the layout, clear leftovers of dead pushes, open stage/<id>."""
    for sub in ("", "releases", "reports", "stage"):
        _mkdir(os.path.join(root, sub))
    stage_root = os.path.join(root, "stage")
    cleaned = []
    for name in os.listdir(stage_root):
        full = os.path.join(stage_root, name)
        if name != release_id:
            _rmtree(full)
            cleaned.append(name)
    for name in os.listdir(root):
        if name.startswith(".") and name.endswith(".tmp"):
            _rmtree(os.path.join(root, name))
    current = _link_target_id(root, "current")
    info = {"root": root, "current": current, "previous": _link_target_id(root, "previous"),
            "release_exists": os.path.isfile(os.path.join(root, "releases", release_id,
                                                          "manifest.json")),
            "cleaned": cleaned, "stage": None, "unchanged": False}
    if current == release_id and info["release_exists"]:
        # Already current: nothing to stage; say what the last self-test found.
        _rmtree(os.path.join(stage_root, release_id))
        info.update(unchanged=True, last_report=status(root)["last_report"])
        return info
    stage = os.path.join(stage_root, release_id)
    _mkdir(stage)
    cleaned.extend(_remove_parts(stage))
    info["stage"] = stage
    return info


def _remove_parts(top):
    removed = []
    for dirpath, _, filenames in os.walk(top):
        for n in filenames:
            if n.endswith(".part"):
                os.unlink(os.path.join(dirpath, n))
                removed.append(os.path.join(dirpath, n))
    return removed


def _stage_manifest(root, release_id):
    stage = os.path.join(root, "stage", release_id)
    path = os.path.join(stage, "manifest.json")
    if not os.path.isfile(path):
        raise DeviceError("stage %s has no manifest.json: upload it first" % stage)
    if sha256_file(path) != release_id:
        os.unlink(path)
        raise DeviceError("manifest.json in stage does not hash to the release id (upload "
                          "damaged): retry the push")
    manifest = _read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise DeviceError("manifest.json in stage lists no files: rebuild the bundle")
    for rel in manifest["files"]:
        if not safe_relpath(rel):
            raise DeviceError("manifest lists an unsafe path %r: rebuild the bundle" % (rel,))
    return stage, manifest


def plan(root, release_id):
    """Which files must still be uploaded. Files already in the stage with the right hash stay;
    files some verified release holds with the same sha256 are linked (or copied) in."""
    stage, manifest = _stage_manifest(root, release_id)
    index = {}
    releases_dir = os.path.join(root, "releases")
    if os.path.isdir(releases_dir):
        for rid in os.listdir(releases_dir):
            for rel, meta in _release_manifest_files(root, rid).items():
                if isinstance(meta, dict) and safe_relpath(rel):
                    index.setdefault(meta.get("sha256"), os.path.join(releases_dir, rid, rel))
    need, present, reused = [], 0, 0
    for rel, meta in sorted(manifest["files"].items()):
        dest = os.path.join(stage, rel)
        want = meta.get("sha256")
        if os.path.isfile(dest) and not os.path.islink(dest):
            if os.path.getsize(dest) == meta.get("size") and sha256_file(dest) == want:
                present += 1
                continue
            os.chmod(dest, 0o644)
            os.unlink(dest)
        src = index.get(want)
        if src and os.path.isfile(src) and not os.path.islink(src):
            _mkdir(os.path.dirname(dest))
            try:
                os.link(src, dest)
            except OSError:
                shutil.copyfile(src, dest)
            reused += 1
            continue
        _mkdir(os.path.dirname(dest))
        need.append(rel)
    return {"stage": stage, "need": need, "present": present, "reused": reused,
            "files": len(manifest["files"])}


def verify(root, release_id, require_signature=False, allowed_signers=None):
    """Hash every file in the stage against the manifest; check the signature if required."""
    stage, manifest = _stage_manifest(root, release_id)
    problems, _ = check_files(stage, manifest["files"])
    listed = set(manifest["files"])
    for dirpath, dirnames, filenames in os.walk(stage):
        if "__pycache__" in dirnames:
            _rmtree(os.path.join(dirpath, "__pycache__"))
            dirnames.remove("__pycache__")
        for n in filenames:
            rel = os.path.relpath(os.path.join(dirpath, n), stage).replace(os.sep, "/")
            if rel not in listed and rel not in ("manifest.json", "signature"):
                problems.append("%s: not listed in the manifest" % rel)
    signature = {"required": bool(require_signature), "present":
                 os.path.isfile(os.path.join(stage, "signature")), "verified": None}
    if require_signature and not problems:
        signature.update(verify_signature(stage, allowed_signers or os.path.join(root,
                                                                                 "allowed_signers")))
        if not signature["verified"]:
            problems.append("signature: %s" % signature["reason"])
    if problems:
        _marker(root, release_id, "verified", remove=True)
        raise DeviceError("bundle verification failed on the device: %s" % "; ".join(problems[:5]))
    for dirpath, _, filenames in os.walk(stage):
        for n in filenames:
            os.chmod(os.path.join(dirpath, n), FILE_MODE)
    _marker(root, release_id, "verified")
    return {"files_checked": len(listed), "signature": signature}


def verify_signature(bundle_dir, allowed_signers):
    """`ssh-keygen -Y verify` of manifest.json against its detached signature."""
    sig = os.path.join(bundle_dir, "signature")
    allowed_signers = os.path.expanduser(allowed_signers)
    if not os.path.isfile(sig):
        return {"verified": False, "reason": "this device requires a signed bundle and the "
                "bundle has none (build it with --sign-key KEY)"}
    if not os.path.isfile(allowed_signers):
        return {"verified": False, "reason": "no allowed signers file at %s (install the "
                "signing public key there, see `edgepack keygen`)" % allowed_signers}
    keygen = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
    try:
        with open(os.path.join(bundle_dir, "manifest.json"), "rb") as data:
            proc = subprocess.run([keygen, "-Y", "verify", "-f", allowed_signers,
                                   "-I", SIGNATURE_PRINCIPAL, "-n", SIGNATURE_NAMESPACE, "-s", sig],
                                  stdin=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"verified": False, "reason": "cannot run ssh-keygen on the device (%s)" % exc}
    out = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        return {"verified": False, "reason": "signature does not verify: %s" % out[-300:]}
    return {"verified": True, "reason": out[-300:]}


def _marker(root, release_id, kind, remove=False):
    path = os.path.join(root, "stage", "%s.%s" % (release_id, kind))
    if remove:
        if os.path.lexists(path):
            os.unlink(path)
        return path
    with open(path, "w") as f:
        f.write(_now_stamp())
    return path


def run_selftest(root, release_id, timeout, extra_args=None):
    """Run the bundle's own agent in the stage with a time limit; store the report."""
    stage, manifest = _stage_manifest(root, release_id)
    _marker(root, release_id, "passed", remove=True)
    result = _selftest_in(root, release_id, stage, timeout, extra_args)
    if result["passed"]:
        _marker(root, release_id, "passed")
    return result


def retest(root, release_id, timeout, extra_args=None):
    """Self-test a release the device already holds (push --retest); `current` is unchanged."""
    folder = os.path.join(root, "releases", release_id)
    if not os.path.isfile(os.path.join(folder, "manifest.json")):
        raise DeviceError("no release %s on this device: push it first" % release_id[:12])
    result = _selftest_in(root, release_id, folder, timeout, extra_args)
    result["current"] = _link_target_id(root, "current")
    return result


def _kill_group(pgid, sig=signal.SIGKILL):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


def _selftest_in(root, release_id, folder, timeout, extra_args=None):
    """`python -m agent selftest` in folder, in its own process group, ended after `timeout` or
    when this process is told to stop (SIGTERM / SIGHUP / SIGINT from the host ending a timed-out
    or interrupted push): the group goes with it, nothing is left running. The report is stored."""
    cmd = [sys.executable, "-B", "-m", "agent", "selftest", "--json", "."] + list(extra_args or [])
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, start_new_session=True)
    stopped = []

    def stop(signum, frame):
        stopped.append(signum)
        _kill_group(proc.pid)

    watched = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    previous = {}
    for sig in watched:
        try:
            previous[sig] = signal.signal(sig, stop)
        except (ValueError, OSError):  # not the main thread (tests): nothing to forward
            pass
    try:
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            out, err = proc.communicate()
            timed_out = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    report = None
    try:
        report = json.loads(out.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        report = None
    if stopped or not isinstance(report, dict) or not isinstance(report.get("verdict"), dict):
        tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
        if stopped:
            reason = ("self-test stopped by signal %d (the host timed out or was interrupted)"
                      % stopped[0])
        elif timed_out:
            reason = "self-test did not finish within %ss (killed)" % timeout
        else:
            reason = "agent crashed (exit %s): %s" % (proc.returncode, " | ".join(tail) or
                                                      "no output")
        report = {"bundle_id": release_id, "verdict": {"passed": False, "status": "error",
                                                       "reasons": [reason]},
                  "exit_code": proc.returncode, "wall_seconds": time.time() - started}
    passed = (bool(report["verdict"].get("passed")) and proc.returncode == 0 and not timed_out
              and not stopped)
    if not passed and report["verdict"].get("passed"):
        report["verdict"] = {"passed": False, "status": "error",
                             "reasons": ["agent exit code %s" % proc.returncode]}
    name = "%s-%s.json" % (_now_stamp(), release_id)
    _mkdir(os.path.join(root, "reports"))
    path = os.path.join(root, "reports", name)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True, default=str)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
    _prune_reports(root)
    return {"passed": passed, "exit_code": proc.returncode, "timed_out": timed_out,
            "report": report, "report_file": name}


# Which distributions provide each runtime of the agent (agent/runtimes/), first found wins,
# and the module that shows it is there when a distribution has no metadata.
RUNTIME_DISTRIBUTIONS = (
    ("onnxruntime", ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino",
                     "onnxruntime-directml", "onnxruntime-qnn", "onnxruntime-silicon"),
     "onnxruntime"),
    ("litert", ("ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu"),
     "ai_edge_litert"),
    ("torch", ("torch",), "torch"),
    ("openvino", ("openvino",), "openvino"),
)


def _dist_version(name):
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8
        return None
    for candidate in (name, name.replace("-", "_")):
        try:
            return metadata.version(candidate)
        except Exception:
            continue
    return None


def _locatable(module):
    """The module can be found (not imported: nothing of it runs)."""
    try:
        import importlib.util
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def facts():
    """What the host checks before it sends anything: this Python, the machine, numpy and the
    installed runtimes with their versions. Standard library only and nothing imported (read
    from the packages' metadata), so it answers in a fraction of a second on any device; the
    agent's own `facts` (run once the agent is staged) adds execution providers / delegates."""
    import platform
    runtimes = {}
    for runtime, dists, module in RUNTIME_DISTRIBUTIONS:
        for dist in dists:
            version = _dist_version(dist)
            if version:
                runtimes[runtime] = {"version": version, "distribution": dist}
                break
        else:
            if _locatable(module):
                runtimes[runtime] = {"version": "unknown", "distribution": None}
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    return {"hostname": socket.gethostname(), "arch": platform.machine(),
            "os": "%s %s" % (platform.system(), platform.release()),
            "python": platform.python_version(), "python_executable": sys.executable,
            "cpu_count": os.cpu_count(), "memory_bytes": memory,
            "numpy": _dist_version("numpy") or ("unknown" if _locatable("numpy") else None),
            "runtimes": runtimes, "source": "device.py"}


def _prune_reports(root, keep=100):
    names = _reports(root)
    for n in names[:-keep] if len(names) > keep else []:
        try:
            os.unlink(os.path.join(root, "reports", n))
        except OSError:
            pass


def activate(root, release_id, keep=DEFAULT_KEEP, force=False):
    """Move a verified, passing stage into releases/<id>; switch current (old -> previous)."""
    release = os.path.join(root, "releases", release_id)
    stage = os.path.join(root, "stage", release_id)
    if not os.path.isdir(release):
        if not os.path.isdir(stage):
            raise DeviceError("nothing to activate: no release or stage %s" % release_id)
        if not force:
            for kind in ("verified", "passed"):
                if not os.path.isfile(os.path.join(root, "stage", "%s.%s" % (release_id, kind))):
                    raise DeviceError("stage %s has not %s: refusing to activate it" % (
                        release_id, {"verified": "been verified",
                                     "passed": "passed its self-test"}[kind]))
        _mkdir(os.path.join(root, "releases"))
        os.rename(stage, release)
        for dirpath, dirnames, _ in os.walk(release, topdown=False):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), RELEASE_DIR_MODE)
        os.chmod(release, RELEASE_DIR_MODE)
    else:
        _rmtree(stage)
    for kind in ("verified", "passed"):
        _marker(root, release_id, kind, remove=True)
    os.utime(release, None)
    old = _link_target_id(root, "current")
    if old != release_id:
        if old:
            _switch_link(root, "previous", old)
        _switch_link(root, "current", release_id)
    pruned = prune(root, keep)
    return {"current": release_id, "previous": _link_target_id(root, "previous"),
            "changed": old != release_id, "pruned": pruned}


def rollback(root):
    current = _link_target_id(root, "current")
    previous = _link_target_id(root, "previous")
    if not previous:
        raise DeviceError("no previous release to roll back to under %s" % root)
    if previous == current:
        raise DeviceError("previous and current are the same release %s" % current[:12])
    _switch_link(root, "current", previous)
    if current:
        _switch_link(root, "previous", current)
    os.utime(os.path.join(root, "releases", previous), None)
    return {"current": previous, "previous": current}


def prune(root, keep=DEFAULT_KEEP):
    releases_dir = os.path.join(root, "releases")
    if not os.path.isdir(releases_dir):
        return []
    protected = set(x for x in (_link_target_id(root, "current"),
                                _link_target_id(root, "previous")) if x)
    others = [r for r in os.listdir(releases_dir) if r not in protected]
    others.sort(key=lambda r: os.path.getmtime(os.path.join(releases_dir, r)), reverse=True)
    room = max(0, int(keep) - len(protected))
    removed = others[room:]
    for rid in removed:
        _rmtree(os.path.join(releases_dir, rid))
    return removed


def abort(root, release_id):
    """Remove a stage and its partial files (a failed push)."""
    _rmtree(os.path.join(root, "stage", release_id))
    for kind in ("verified", "passed"):
        _marker(root, release_id, kind, remove=True)
    return {"removed": release_id}


# ---------------------------------------------------------------------------- commands

def _holder(args):
    return getattr(args, "holder", None) or "%s@%s" % (os.environ.get("USER", "?"),
                                                       socket.gethostname())


def cmd_lock(args):
    """Hold the lock while stdin stays open and heartbeats keep coming."""
    os.umask(0o022)
    root = resolve_root(args.root)
    lock = Lock(root)
    try:
        token = lock.acquire(_holder(args))
    except (DeviceError, OSError) as exc:
        _emit({"ok": False, "error": str(exc)})
        return 1
    answer = {"ok": True, "token": token, "root": root, "home": os.path.expanduser("~"),
              "python": sys.version.split()[0]}
    if getattr(args, "facts", False):  # device-facts in the same process: one Python start less
        answer["device_facts"] = facts()
    if getattr(args, "prepare", None):
        # An unchanged re-push ends here, in one round trip: `prepare` in the same process when the
        # release is already current. A new release is prepared later, after the host has checked
        # the device's facts (nothing is made on a device that cannot run the bundle).
        try:
            rid = _valid_id(args.prepare)
            if _link_target_id(root, "current") == rid:
                answer["prepared"] = prepare(root, rid)
        except (DeviceError, OSError) as exc:
            answer["prepare_error"] = str(exc)
    _emit(answer)
    try:
        while True:
            ready, _, _ = select.select([sys.stdin], [], [], args.ttl)
            if not ready:
                break  # no heartbeat: the host is gone
            if not os.read(sys.stdin.fileno(), 4096):
                break  # EOF: the push is done
    except (OSError, KeyboardInterrupt):
        pass
    lock.release()
    return 0


def _stage_selftest(root, release_id, args):
    return _answer(run_selftest(root, release_id, args.timeout, args.agent_args))


def _release_selftest(root, release_id, args):
    return _answer(retest(root, release_id, args.timeout, args.agent_args))


def _answer(result):
    result["ok"] = result["passed"]
    if not result["passed"]:
        result["error"] = "; ".join(result["report"]["verdict"].get("reasons") or ["failed"])
    return result


_KEEP = ("--keep", {"type": int, "default": DEFAULT_KEEP, "help": "releases to keep"})

# The one-shot commands: (name, help, takes --id, holds the lock (or --lease), what it does with
# (root, release id or None, args) -> its JSON object, its own arguments).
COMMANDS = (
    ("status", "current/previous release and last report", False, False,
     lambda root, rid, args: status(root), ()),
    ("prepare", "create the layout and stage/<id>", True, True,
     lambda root, rid, args: prepare(root, rid), ()),
    ("plan", "list stage files still to upload", True, True,
     lambda root, rid, args: plan(root, rid), ()),
    ("verify-stage", "hash-check a stage (and its signature)", True, True,
     lambda root, rid, args: verify(root, rid, args.require_signature, args.allowed_signers),
     (("--require-signature", {"action": "store_true"}),
      ("--allowed-signers", {"help": "allowed_signers file (default <root>/allowed_signers)"}))),
    ("stage-selftest", "self-test a stage, store the report", True, True, _stage_selftest,
     (("--timeout", {"type": float, "default": 600.0}),
      ("agent_args", {"nargs": "*", "help": "extra arguments for `agent selftest`"}))),
    ("release-selftest", "self-test a release the device holds (push --retest)", True, True,
     _release_selftest,
     (("--timeout", {"type": float, "default": 600.0}),
      ("agent_args", {"nargs": "*", "help": "extra arguments for `agent selftest`"}))),
    ("device-facts", "Python, machine, numpy and installed runtimes (stdlib only)", False, False,
     lambda root, rid, args: facts(), ()),
    ("activate", "make a verified, passing stage current", True, True,
     lambda root, rid, args: activate(root, rid, args.keep, args.force),
     (_KEEP, ("--force", {"action": "store_true", "help": "skip the verified/passed check"}))),
    ("rollback", "switch current back to previous", False, True,
     lambda root, rid, args: rollback(root), ()),
    ("abort", "remove a stage and its partial files", True, True,
     lambda root, rid, args: abort(root, rid), ()),
    ("prune", "remove old releases", False, True,
     lambda root, rid, args: {"pruned": prune(root, args.keep)}, (_KEEP,)),
)


def _command(action, needs_id, locked):
    """A command from the table: JSON on stdout, exit 0 / 1 (refused or failed) / 2 (bad usage)."""
    def command(args):
        os.umask(0o022)
        try:
            root = resolve_root(args.root)
            rid = _valid_id(args.id) if needs_id else None
            if locked:
                with _Guard(root, args.lease, _holder(args)):
                    result = action(root, rid, args)
            else:
                result = action(root, rid, args)
            result = result or {}
            result.setdefault("ok", True)
            _emit(result)
            return 0 if result["ok"] else 1
        except DeviceError as exc:
            _emit({"ok": False, "error": str(exc)})
            return 1
        except OSError as exc:
            _emit({"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)})
            return 1
    return command


def register(subparsers):
    """Add the release-layout commands to an argparse subparsers object."""
    def add(name, func, help_text, needs_id=False, lease=True):
        p = subparsers.add_parser(name, help=help_text)
        p.add_argument("--root", default=DEFAULT_ROOT, help="edgepack root (default ~/.edgepack)")
        if needs_id:
            p.add_argument("--id", required=True, help="release id (sha256 of manifest.json)")
        if lease:
            p.add_argument("--lease", help="token of a held `lock` (else lock for this command)")
            p.add_argument("--holder", help="who holds the lock (shown to others)")
        p.set_defaults(func=func)
        return p

    p = add("lock", cmd_lock, "hold the root's lock while stdin is open", lease=False)
    p.add_argument("--ttl", type=float, default=30.0, help="seconds without heartbeat to give up")
    p.add_argument("--holder")
    p.add_argument("--prepare", metavar="ID", help="also run `prepare --id ID` once locked, if ID is current")
    p.add_argument("--facts", action="store_true", help="also answer with `device-facts`")
    for name, help_text, needs_id, locked, action, options in COMMANDS:
        p = add(name, _command(action, needs_id, locked), help_text, needs_id, lease=locked)
        for flag, kwargs in options:
            p.add_argument(flag, **kwargs)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="edgepack-device", description=__doc__.split("\n")[0])
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
