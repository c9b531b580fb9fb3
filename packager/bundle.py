"""Write, read and verify bundles (DESIGN section 2).

A bundle is written into a temporary folder beside its destination and renamed into place,
so a failed build leaves nothing behind. A `.tar.gz` of the folder is the same bundle;
extraction refuses absolute paths, `..`, links and special files before writing anything.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np

import agent
from agent import manifest as agent_manifest

from .errors import BundleError, OutputError

MANIFEST = agent_manifest.MANIFEST
AGENT_DIR = Path(agent.__file__).resolve().parent


def release_id(bundle_dir: str | Path) -> str:
    return agent_manifest.release_id(str(bundle_dir))


def load_manifest(bundle_dir: str | Path) -> dict:
    try:
        return agent_manifest.load(str(bundle_dir))
    except agent_manifest.BundleUnusable as exc:
        raise BundleError(str(exc).split(" (fix: ")[0], _hint_of(str(exc))) from None


def verify(bundle_dir: str | Path) -> dict:
    manifest = load_manifest(bundle_dir)
    result = agent_manifest.verify_files(str(bundle_dir), manifest)
    if not result["passed"]:
        raise BundleError(f"bundle '{bundle_dir}' fails its integrity check: "
                          + "; ".join(result["problems"][:5]), "rebuild the bundle or copy it again")
    return manifest


def _hint_of(text: str) -> str | None:
    return text.split(" (fix: ", 1)[1].rstrip(")") if " (fix: " in text else None


def check_out_dir(out: Path) -> None:
    """Refuse an --out that cannot hold bundles. Creates nothing: a build that fails later
    leaves no empty --out folder behind (make_out_dir creates it when the bundle is written)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out '{out}' is a file, not a folder", "pass a folder for bundles, e.g. --out dist/")
    if out.is_dir():
        if not os.access(out, os.W_OK | os.X_OK):
            raise OutputError(f"--out folder '{out}' is not writable",
                              "choose a writable folder, or fix its permissions")
        return
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create --out folder '{out}': '{parent}' is a file, not a folder",
                          "choose another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create --out folder '{out}': '{parent}' is not writable",
                          "choose a writable folder")


def make_out_dir(out: Path) -> None:
    check_out_dir(out)
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create --out folder '{out}': {exc.strerror}",
                          "choose a writable folder") from exc


def write_vectors(path: Path, inputs: list[dict], outputs: list[dict]) -> dict:
    """Stack samples per tensor; keys are i0.., o0.. (names can hold any characters)."""
    in_names = list(inputs[0])
    out_names = list(outputs[0])
    arrays, in_keys, out_keys = {}, {}, {}
    for i, name in enumerate(in_names):
        in_keys[name] = f"i{i}"
        arrays[f"i{i}"] = np.stack([s[name] for s in inputs])
    for i, name in enumerate(out_names):
        out_keys[name] = f"o{i}"
        arrays[f"o{i}"] = np.stack([s[name] for s in outputs])
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return {"path": path.name, "samples": len(inputs), "inputs": in_keys, "outputs": out_keys}


def _copy_agent(dest: Path) -> None:
    shutil.copytree(AGENT_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))


def _file_table(root: Path) -> dict:
    table = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            if rel in (MANIFEST, agent_manifest.SIGNATURE):
                continue
            table[rel] = {"sha256": agent_manifest.sha256_file(str(path)), "size": path.stat().st_size}
    return table


def write(out_dir: Path, folder_name: str, model_files: dict[str, Path], manifest: dict,
          inputs: list[dict], outputs: list[dict], force: bool = False, finalize=None) -> Path:
    """Assemble a bundle in a temp folder, then rename it to out_dir/folder_name.

    model_files: name inside model/ -> file; the first is the model, the rest its sidecars.

    finalize(tmp_folder), if given, runs after the manifest is written and before the rename
    (signing): if it fails, no bundle appears.
    """
    created = not Path(out_dir).exists()
    make_out_dir(out_dir)
    final = out_dir / folder_name
    if final.exists() and not force:
        raise OutputError(f"bundle '{final}' already exists", "pass --force to replace it, or set --version")
    tmp = None
    try:
        remove_stale_temps(out_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder_name}.{_host_pid()}.", suffix=".tmp", dir=out_dir))
        (tmp / "model").mkdir()
        for name, path in model_files.items():
            shutil.copyfile(path, tmp / "model" / name)
        model_name = next(iter(model_files))
        manifest = dict(manifest)
        manifest["model"] = {"path": f"model/{model_name}", "size": (tmp / "model" / model_name).stat().st_size}
        manifest["vectors"] = write_vectors(tmp / "vectors.npz", inputs, outputs)
        _copy_agent(tmp / "agent")
        manifest["files"] = _file_table(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if finalize is not None:
            finalize(tmp)
        os.chmod(tmp, 0o755)
        _rename_into_place(tmp, final, out_dir, folder_name)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if created:
            _silent_rmdir(out_dir)  # leave no empty --out folder we made
        if isinstance(exc, OSError):
            raise OutputError(f"writing the bundle in '{out_dir}' failed: {exc.strerror or exc}",
                              "free disk space or choose another --out") from exc
        raise
    return final


def _host_pid() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def remove_stale_temps(out_dir: Path) -> list[Path]:
    """Remove `.NAME.HOST-PID.XXXX.tmp` / `.old` folders left by builds on this host that died
    (SIGKILL, power loss): their process no longer exists. Others' temps are left alone."""
    removed = []
    mine = re.compile(r"\." + re.escape(socket.gethostname()) + r"-(\d+)\.")
    for path in Path(out_dir).iterdir():
        if not (path.name.startswith(".") and path.suffix in (".tmp", ".old") and path.is_dir()):
            continue
        match = mine.search(path.name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rename_into_place(tmp: Path, final: Path, out_dir: Path, folder_name: str) -> None:
    """tmp -> final; an existing final (--force) is swapped out and restored if the swap fails."""
    if not final.exists():
        os.rename(tmp, final)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{folder_name}.{_host_pid()}.", suffix=".old", dir=out_dir))
    os.rename(final, old / "b")
    try:
        os.rename(tmp, final)
    except OSError:
        os.rename(old / "b", final)
        os.rmdir(old)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _silent_rmdir(path: Path) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


def make_archive(bundle_dir: Path, dest: Path | None = None) -> Path:
    dest = dest or bundle_dir.with_name(bundle_dir.name + ".tar.gz")
    tmp = dest.with_name("." + dest.name + ".tmp")
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(bundle_dir, arcname=bundle_dir.name,
                    filter=lambda ti: None if "__pycache__" in ti.name else ti)
        os.replace(tmp, dest)
    except OSError as exc:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise OutputError(f"writing the archive '{dest}' failed: {exc.strerror or exc} (the bundle "
                          f"folder {bundle_dir} is complete)", "free disk space, then run `tar czf` on the "
                          "bundle folder or build again with --force --archive") from exc
    return dest


def extract_archive(archive: Path, dest_parent: Path) -> Path:
    """Extract a bundle .tar.gz safely; returns the bundle folder. Checks every member first."""
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"'{archive}' is not a readable tar archive ({exc})", "rebuild or copy the archive again") from exc
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise BundleError(f"'{archive}' is a truncated or corrupt archive ({type(exc).__name__}: {exc}); "
                              "nothing was extracted", "rebuild or copy the archive again") from exc
        tops = set()
        for m in members:
            name = m.name
            parts = Path(name).parts
            if name.startswith(("/", "\\")) or os.path.isabs(name) or ".." in parts:
                raise BundleError(f"archive '{archive}' holds an unsafe path '{name}'; nothing was extracted",
                                  "only extract bundles made by `edgepack build`")
            if m.issym() or m.islnk():
                raise BundleError(f"archive '{archive}' holds a link '{name}'; nothing was extracted",
                                  "only extract bundles made by `edgepack build`")
            if not (m.isfile() or m.isdir()):
                raise BundleError(f"archive '{archive}' holds a special file '{name}'; nothing was extracted",
                                  "only extract bundles made by `edgepack build`")
            if parts:
                tops.add(parts[0])
        if len(tops) != 1:
            raise BundleError(f"archive '{archive}' must hold one bundle folder, found {sorted(tops)}",
                              "archive the bundle folder itself")
        top = tops.pop()
        if (dest_parent / top).exists():
            raise BundleError(f"'{dest_parent / top}' already exists; nothing was extracted",
                              "extract into an empty folder")
        dest_parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            tar.extractall(dest_parent, **kwargs)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            shutil.rmtree(dest_parent / top, ignore_errors=True)
            raise BundleError(f"extracting '{archive}' failed ({type(exc).__name__}: {exc}); nothing was kept",
                              "free disk space, or rebuild or copy the archive again") from exc
    return dest_parent / top
