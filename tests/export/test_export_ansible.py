"""`edgepack export ansible`: the playbook it writes, run by real ansible-core against real
OpenSSH devices on loopback, leaves every device on exactly the release `edgepack push` leaves it
on: activation, a device whose self-test fails keeping its previous release, a failed canary
stopping the rollout, an unchanged re-run, the reports fetched home."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from fleet_harness import current_of, leftovers, rid, run_cli

ENV = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "False",
       "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_FORCE_COLOR": "0"}


def _inventory(fleet, path: Path, root: str, overrides: dict | None = None) -> Path:
    hosts = {}
    for d in fleet.devices:
        v = d.vars(edgepack_root=root)
        v.update((overrides or {}).get(d.name, {}))
        hosts[d.name] = v
    data = {"all": {"hosts": hosts, "vars": {"ansible_ssh_common_args":
                                             f"-o UserKnownHostsFile={fleet.known_hosts} "
                                             "-o StrictHostKeyChecking=yes"}}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _export(bundle, inv, out, *extra):
    r = run_cli("export", "ansible", bundle, "-i", inv, "--out", out, "--force", "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _play(exe, inv, out, tmp_path, forks=4):
    env = dict(os.environ, **ENV, ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
               ANSIBLE_CONTROL_PATH_DIR=str(tmp_path / "cp"))
    return subprocess.run([exe, "-i", str(inv), "-f", str(forks), str(Path(out) / "site.yml")],
                          capture_output=True, text=True, timeout=900, env=env)


def _push(bundle, inv, fleet, tmp_path, *extra):
    r = run_cli("push", bundle, "-i", inv, "--known-hosts", fleet.known_hosts, "--reports",
                tmp_path / "push-reports", "--json", *extra)
    return r.returncode, json.loads(r.stdout)


def _state(fleet, root):
    out = {}
    for d in fleet.devices:
        prev = d.path(root) / "previous"
        out[d.name] = (current_of(d, root), os.path.basename(os.readlink(prev)) if prev.is_symlink() else None)
    return out


def test_export_writes_a_self_contained_playbook(bundles, tmp_path):
    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"a": {}, "b": {}, "c": {}}}}))
    res = _export(bundles["v1"], inv, tmp_path / "deploy", "--canary", "1", "--max-fail", "25")
    d = Path(res["out"])
    plays = yaml.safe_load((d / "site.yml").read_text())
    assert [p["hosts"] for p in plays] == ["all[0:0]", "all[1:]"]
    assert plays[0]["any_errors_fatal"] is True and plays[1]["max_fail_percentage"] == 25
    facts = yaml.safe_load((d / "vars" / "bundle.yml").read_text())["edgepack_bundle"]
    assert facts["release_id"] == rid(bundles["v1"]) == res["release_id"]
    manifest = json.loads((d / "bundle" / "manifest.json").read_text())
    assert set(facts["sha1"]) == set(manifest["files"]) | {"manifest.json"}
    assert (d / "bundle" / "agent" / "device.py").is_file() and (d / "tasks" / "deliver.yml").is_file()
    # refuses to overwrite without --force; bad options are one line, exit 2, nothing written
    r = run_cli("export", "ansible", bundles["v1"], "-i", inv, "--out", d)
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("export", "ansible", bundles["v1"], "-i", inv, "--out", tmp_path / "x", "--max-fail", "250")
    assert r.returncode == 2 and "--max-fail" in r.stderr and not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_ansible_export_ends_where_push_ends(small_fleet, playbook_exe, bundles, tmp_path):
    fleet = small_fleet
    last = fleet.devices[-1].name
    nort = {last: {"ansible_python_interpreter": fleet.python_nort}}  # lacks onnxruntime
    inv_push = _inventory(fleet, tmp_path / "push.yaml", "~/ep-x-push")
    inv_ans = _inventory(fleet, tmp_path / "ans.yaml", "~/ep-x-ans")
    deploy = tmp_path / "deploy"

    # 1. first rollout: every device activates v1
    code, out = _push(bundles["v1"], inv_push, fleet, tmp_path)
    assert code == 0, [d["reason"] for d in out["devices"]]
    _export(bundles["v1"], inv_ans, deploy)
    p = _play(playbook_exe, inv_ans, deploy, tmp_path)
    assert p.returncode == 0, p.stdout[-3000:]
    v1 = rid(bundles["v1"])
    assert set(_state(fleet, "~/ep-x-ans").values()) == {(v1, None)}
    assert _state(fleet, "~/ep-x-ans") == _state(fleet, "~/ep-x-push")
    for d in fleet.devices:  # the device.py copy is where push keeps it; reports came home
        assert list((d.path("~/ep-x-ans") / ".agent").glob("device-*.py"))
        assert list((deploy / "reports" / d.name).glob(f"*-{v1}.json"))

    # 2. v2, one device lacks the runtime: it keeps v1 under both, the others move to v2
    inv_push = _inventory(fleet, tmp_path / "push.yaml", "~/ep-x-push", nort)
    inv_ans = _inventory(fleet, tmp_path / "ans.yaml", "~/ep-x-ans", nort)
    code, out = _push(bundles["v2"], inv_push, fleet, tmp_path)
    assert code == 3 and out["devices"][-1]["status"] == "failed"
    _export(bundles["v2"], inv_ans, deploy)
    p = _play(playbook_exe, inv_ans, deploy, tmp_path)
    assert p.returncode != 0 and f"{last}" in p.stdout and "keeps its current release" in p.stdout
    v2 = rid(bundles["v2"])
    state = _state(fleet, "~/ep-x-ans")
    assert state == _state(fleet, "~/ep-x-push")
    assert state[last] == (v1, None) and all(s == (v2, v1) for n, s in state.items() if n != last)
    assert all(leftovers(d, "~/ep-x-ans") == [] for d in fleet.devices)
    report = next((deploy / "reports" / last).glob(f"*-{v2}.json"))  # the failed one came home too
    assert json.loads(report.read_text())["verdict"]["passed"] is False

    # 3. a failing bundle behind a canary of 1: the canary keeps v2, nobody else is touched
    inv_push = _inventory(fleet, tmp_path / "push.yaml", "~/ep-x-push")
    inv_ans = _inventory(fleet, tmp_path / "ans.yaml", "~/ep-x-ans")
    code, out = _push(bundles["failing"], inv_push, fleet, tmp_path, "--canary", "1")
    assert code == 1 and [d["status"] for d in out["devices"]][1:] == ["skipped"] * 3
    _export(bundles["failing"], inv_ans, deploy, "--canary", "1")
    p = _play(playbook_exe, inv_ans, deploy, tmp_path)
    assert p.returncode != 0
    assert _state(fleet, "~/ep-x-ans") == _state(fleet, "~/ep-x-push") == state
    others = [d for d in fleet.devices[1:]]
    assert not any(list((deploy / "reports" / d.name).glob(f"*-{rid(bundles['failing'])}.json"))
                   for d in others)

    # 4. v2 again, everyone has the runtime: unchanged where current, activated on the last one
    _export(bundles["v2"], inv_ans, deploy)
    assert report.is_file()  # re-exporting over deploy/ keeps the reports fetched so far
    p = _play(playbook_exe, inv_ans, deploy, tmp_path)
    assert p.returncode == 0, p.stdout[-3000:]
    _push(bundles["v2"], inv_push, fleet, tmp_path)
    assert _state(fleet, "~/ep-x-ans") == _state(fleet, "~/ep-x-push")
    assert _state(fleet, "~/ep-x-ans")[last] == (v2, v1)
