"""Ansible inventories: groups, vars and their precedence, --limit, ranges, ~/.ssh/config, errors."""
from __future__ import annotations

import os

import pytest

from packager.errors import InventoryError
from packager.fleet.inventory import expand_pattern, load, parse


INVENTORY = """
all:
  vars:
    edgepack_root: /srv/edge
    ansible_user: ops
  hosts:
    lone: {ansible_host: 10.0.0.9}
  children:
    cameras:
      vars: {edgepack_profile: jetson, ansible_port: 2222}
      hosts:
        cam[01:03]:
      children:
        lobby:
          vars: {ansible_port: 2200}
          hosts:
            cam02: {ansible_host: 10.0.1.2, ansible_python_interpreter: /opt/py/bin/python3}
    gateways:
      hosts:
        gw-a: {ansible_user: root, edgepack_require_signature: "yes", edgepack_keep: 5}
"""


@pytest.fixture
def inv(tmp_path):
    p = tmp_path / "fleet.yaml"
    p.write_text(INVENTORY)
    return load(str(p), ssh_config=None)


def test_inventory_groups_vars_and_precedence(inv):
    assert list(inv.hosts) == ["lone", "cam01", "cam02", "cam03", "gw-a"]
    cam1, cam2, gw = inv.hosts["cam01"], inv.hosts["cam02"], inv.hosts["gw-a"]
    assert (cam1.address, cam1.port, cam1.user, cam1.profile) == ("cam01", 2222, "ops", "jetson")
    assert (cam2.address, cam2.port, cam2.python) == ("10.0.1.2", 2200, ["/opt/py/bin/python3"])
    assert cam1.root == "/srv/edge" and inv.hosts["lone"].profile is None
    assert gw.user == "root" and gw.require_signature is True and gw.keep == 5
    assert sorted(inv.groups) == ["cameras", "gateways", "lobby"]


def test_limit_names_groups_globs_and_exclusions(inv):
    names = lambda limit: [h.name for h in inv.select(limit)]  # noqa: E731
    assert names("cameras") == ["cam01", "cam02", "cam03"]
    assert names("lobby,lone") == ["lone", "cam02"]
    assert names("cam0[13]") == ["cam01", "cam03"]
    assert names("gw-*,cam*") == ["cam01", "cam02", "cam03", "gw-a"]
    assert names("cameras,!lobby") == ["cam01", "cam03"]
    assert names("!cameras") == ["lone", "gw-a"]
    with pytest.raises(InventoryError, match="matches no host"):
        inv.select("nothing*")


@pytest.mark.parametrize("text,message", [
    ("all: [1, 2", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping"),
    ("all:\n  hosts:\n    x: {ansible_host: ''}\n", "empty ansible_host"),
    ("all:\n  hosts:\n    'bad host': {}\n", "no usable address"),
    ("all:\n  hosts:\n    x: {ansible_port: ssh}\n", "ansible_port"),
    ("all:\n  hosts:\n    x: {edgepack_require_signature: maybe}\n", "true or false"),
    ("all:\n  hostz: {}\n", "unknown key"),
    ("all:\n  hosts:\n    x: {edgepack_keep: 1}\n", "edgepack_keep"),
])
def test_inventory_errors_are_one_clear_line(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(InventoryError, match=message) as exc:
        load(str(p), ssh_config=None)
    assert exc.value.hint and exc.value.exit_code == 2


def test_missing_inventory_file(tmp_path):
    with pytest.raises(InventoryError, match="does not exist"):
        load(str(tmp_path / "nope.yaml"))


def test_ssh_config_fills_what_the_inventory_leaves_out(tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host cam*\n  HostName 192.168.7.7\n  Port 2022\n  User pi\n"
                   "  IdentityFile ~/.ssh/cam_key\n")
    inv = parse({"all": {"hosts": {"cam1": None, "cam2": {"ansible_port": 22}}}},
                ssh_config=str(cfg))
    c1, c2 = inv.hosts["cam1"], inv.hosts["cam2"]
    assert (c1.address, c1.port, c1.user) == ("192.168.7.7", 2022, "pi")
    assert c1.key_file == os.path.expanduser("~/.ssh/cam_key")
    assert c2.port == 22  # the inventory wins


def test_host_ranges():
    assert expand_pattern("w[1:3].x", "f") == ["w1.x", "w2.x", "w3.x"]
    assert expand_pattern("w[08:10]", "f") == ["w08", "w09", "w10"]
    assert expand_pattern("n[a:c]", "f") == ["na", "nb", "nc"]
