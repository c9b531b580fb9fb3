"""`edgepack export ansible BUNDLE -i fleet.yaml --out deploy/`: a self-contained playbook.

    deploy/site.yml            the plays: the canary (any failure stops the rollout), then the rest
                               (max_fail_percentage); each imports tasks/deliver.yml
    deploy/tasks/deliver.yml   the gated delivery of `edgepack push`, step by step (templates/)
    deploy/vars/bundle.yml     the bundle's id, profile, signature flag and each file's sha1
                               (ansible's copy checks it after the transfer)
    deploy/bundle/             the bundle itself (manifest.json, model/, vectors.npz, agent/, signature)
    deploy/README.md           how to run it

Runs as `ansible-playbook -i fleet.yaml deploy/site.yml` with the same inventory as `push`
(edgepack_root, edgepack_profile, edgepack_require_signature, edgepack_allowed_signers,
edgepack_keep, ansible_python_interpreter); host keys are checked as the user's ssh and Ansible
configuration say. Written to a temp folder beside --out and renamed into place.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from packager.errors import OutputError, UsageError

TEMPLATES = Path(__file__).resolve().parent / "templates"
PY_SPLIT = "{{ (ansible_python_interpreter | default('python3')).split() }}"


@dataclass(frozen=True)
class AnsibleExport:
    out: str
    release_id: str
    hosts: int
    canary: int
    max_fail: Optional[float]
    files: int
    command: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _sha1(path: str) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _play(name: str, hosts: str, extra: dict) -> dict:
    play = {"name": name, "hosts": hosts, "gather_facts": False, **extra,
            "vars_files": ["vars/bundle.yml"], "vars": {"_ep_python": PY_SPLIT},
            "tasks": [{"name": "edgepack | deliver", "ansible.builtin.import_tasks":
                       "tasks/deliver.yml"}]}
    return play


def site(canary: int, max_fail: Optional[float]) -> list:
    """The plays of site.yml (inventory order, as push): canary first, then the rest."""
    rest = {} if max_fail is None else {"max_fail_percentage": max_fail}
    if not canary:
        return [_play("edgepack rollout", "all", rest)]
    return [_play(f"edgepack canary (the first {canary}; any failure stops the rollout)",
                  f"all[0:{canary - 1}]", {"any_errors_fatal": True}),
            _play("edgepack rollout (the rest)", f"all[{canary}:]", rest)]


def export_ansible(bundle_path: str, hosts: list, out: str, canary: int = 0,
                   max_fail: Optional[float] = None, selftest_timeout: float = 600.0,
                   force: bool = False, inventory: str = "fleet.yaml") -> AnsibleExport:
    import yaml

    from packager.fleet import FleetOptions, open_bundle

    FleetOptions(canary=canary, max_fail=max_fail)  # the same checks as push (one UsageError)
    if selftest_timeout <= 0:
        raise UsageError(f"--selftest-timeout must be > 0, got {selftest_timeout}",
                         hint="pass --selftest-timeout 600")
    dest = Path(out)
    if dest.exists() and not force:
        raise OutputError(f"{out} already exists", hint="pass --force to replace it, or another --out")
    bundle = open_bundle(bundle_path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            shutil.copytree(bundle.path, tmp / "bundle", symlinks=False)
            (tmp / "tasks").mkdir()
            shutil.copyfile(TEMPLATES / "deliver.yml", tmp / "tasks" / "deliver.yml")
            (tmp / "vars").mkdir()
            rels = sorted(bundle.manifest["files"]) + ["manifest.json"]
            m = bundle.manifest
            facts = {"name": m.get("name"), "version": m.get("version"), "profile": bundle.profile,
                     "release_id": bundle.release_id, "signed": bundle.signed,
                     "device_sha256": m["files"]["agent/device.py"]["sha256"],
                     "selftest_timeout": float(selftest_timeout),
                     "sha1": {rel: _sha1(bundle.file(rel)) for rel in rels}}
            (tmp / "vars" / "bundle.yml").write_text(
                "# written by `edgepack export ansible`: the bundle in bundle/, described\n"
                + yaml.safe_dump({"edgepack_bundle": facts}, sort_keys=True))
            header = (f"# edgepack export ansible: {m.get('name')} {m.get('version')} for profile "
                      f"{bundle.profile} (release {bundle.release_id[:12]})\n"
                      f"# run: ansible-playbook -i {inventory} {dest}/site.yml\n")
            (tmp / "site.yml").write_text(header + yaml.safe_dump(site(canary, max_fail),
                                                                  sort_keys=False, width=100))
            command = f"ansible-playbook -i {inventory} {dest}/site.yml"
            (tmp / "README.md").write_text(_readme(m, bundle.release_id, command, canary, max_fail,
                                                   len(hosts)))
            if dest.exists():
                if (dest / "reports").is_dir():  # reports fetched by earlier runs stay
                    shutil.copytree(dest / "reports", tmp / "reports", symlinks=True)
                old = dest.with_name(f".{dest.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(dest, old)
                os.replace(tmp, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        bundle.cleanup()
    return AnsibleExport(str(dest), bundle.release_id, len(hosts), canary, max_fail,
                         len(rels), command)


def _readme(m: dict, rid: str, command: str, canary: int, max_fail, n: int) -> str:
    policy = []
    if canary:
        policy.append(f"the first {canary} host(s) in inventory order go first; if any fails, the "
                      "rest are not touched")
    if max_fail is not None:
        policy.append(f"the play stops once more than {max_fail:g}% of the hosts failed "
                      "(max_fail_percentage)")
    return "\n".join([
        f"# {m.get('name')} {m.get('version')}: an edgepack rollout for Ansible", "",
        f"Release `{rid}`, checked against {n} host(s) of the inventory at export time.", "",
        "```", command, "```", "",
        "Each device: stage, upload with checksums, verify, self-test, activate only on a pass "
        "(else the stage is removed and `current` stays), the report fetched to "
        "`reports/<host>/` (override with `-e edgepack_reports_dir=DIR`). Same inventory and "
        "variables as `edgepack push` (docs/FLEET.md, docs/SCALE.md).",
        "", "Rollout: " + ("; ".join(policy) if policy else "all hosts at once (forks)") + ".",
        "", "Differences from `edgepack push`: the device lock is taken per step, not for the "
        "whole run; the facts pre-check is the self-test's own (a missing runtime fails the "
        "self-test, the device keeps its release).", ""]) + "\n"
