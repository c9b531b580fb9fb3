"""Ansible YAML inventories, read as they are: all / children / hosts / vars.

Variable precedence follows Ansible: `all` vars, then group vars from the shallowest group to
the deepest (ties by name), then host vars. edgepack reads the `ansible_*` connection vars and
its own `edgepack_*` vars; hosts without explicit connection settings follow ~/.ssh/config.
"""
from __future__ import annotations

import fnmatch
import getpass
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from packager.errors import InventoryError

DEFAULT_ROOT = "~/.edgepack"
DEFAULT_KEEP = 3
TRUE_WORDS = {"1", "true", "yes", "on", "y"}
FALSE_WORDS = {"0", "false", "no", "off", "n", ""}


@dataclass
class Host:
    name: str
    address: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    python: list[str] = field(default_factory=lambda: ["python3"])
    root: str = DEFAULT_ROOT
    profile: str | None = None
    require_signature: bool = False
    allowed_signers: str | None = None
    keep: int = DEFAULT_KEEP
    groups: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class Inventory:
    path: str
    hosts: dict[str, Host]
    groups: dict[str, list[str]]  # group -> host names (recursive)

    def select(self, limit: str | None) -> list[Host]:
        """Hosts matching --limit (comma- or colon-separated names/groups/globs, `!` excludes)."""
        names = list(self.hosts)
        if not limit:
            if not names:
                raise InventoryError(f"inventory {self.path} has no hosts",
                                     hint="add hosts under all: hosts:")
            return [self.hosts[n] for n in names]
        chosen: list[str] = []
        excluded: set[str] = set()
        patterns = [p.strip() for p in re.split(r"[,:]", limit) if p.strip()]
        for pat in patterns:
            negate = pat.startswith("!")
            pat = pat[1:] if negate else pat
            matched = self._match(pat)
            if negate:
                excluded.update(matched)
            else:
                chosen.extend(n for n in matched if n not in chosen)
        if all(p.startswith("!") for p in patterns):
            chosen = names
        result = [self.hosts[n] for n in names if n in chosen and n not in excluded]
        if not result:
            raise InventoryError(f"--limit {limit!r} matches no host in {self.path}",
                                 hint="known hosts: " + ", ".join(names[:20]) +
                                      ("; groups: " + ", ".join(sorted(self.groups)[:20])))
        return result

    def _match(self, pat: str) -> list[str]:
        out: list[str] = []
        for name in self.hosts:
            if fnmatch.fnmatchcase(name, pat):
                out.append(name)
        for group, members in self.groups.items():
            if fnmatch.fnmatchcase(group, pat):
                out.extend(m for m in members if m not in out)
        return out


def load(path: str, ssh_config: str | None = "~/.ssh/config") -> Inventory:
    import yaml

    try:
        with open(path, "rb") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise InventoryError(f"inventory {path} does not exist", hint="pass -i FILE.yaml")
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc}", hint="check the path")
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise InventoryError(f"inventory {path} is not valid YAML{at}: "
                             f"{getattr(exc, 'problem', None) or exc}",
                             hint="fix the YAML (an Ansible YAML inventory: all: hosts: ...)")
    return parse(data, path, ssh_config)


def parse(data: Any, path: str = "<inventory>", ssh_config: str | None = None) -> Inventory:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InventoryError(f"inventory {path} must be a mapping of groups (all: ...), "
                             f"got {type(data).__name__}", hint="see docs/FLEET.md")
    host_vars: dict[str, dict] = {}
    group_vars: dict[str, dict] = {}
    group_hosts: dict[str, set] = {}
    children: dict[str, list] = {}

    def walk(group: str, body: Any, trail: tuple):
        if group in trail:
            raise InventoryError(f"inventory {path}: group {group!r} contains itself",
                                 hint="remove the cycle from children:")
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise InventoryError(f"inventory {path}: group {group!r} must be a mapping with "
                                 f"hosts/vars/children, got {type(body).__name__}",
                                 hint="write `group: {hosts: {name: {...}}}`")
        unknown = set(body) - {"hosts", "vars", "children"}
        if unknown:
            raise InventoryError(f"inventory {path}: group {group!r} has unknown key(s) "
                                 f"{', '.join(sorted(map(str, unknown)))}",
                                 hint="a group holds only hosts, vars and children")
        group_hosts.setdefault(group, set())
        gv = body.get("vars") or {}
        if not isinstance(gv, dict):
            raise InventoryError(f"inventory {path}: vars of group {group!r} must be a mapping",
                                 hint="write `vars: {name: value}`")
        group_vars.setdefault(group, {}).update(gv)
        hosts = body.get("hosts") or {}
        if isinstance(hosts, list):  # tolerated: a list of names
            hosts = {h: None for h in hosts}
        if not isinstance(hosts, dict):
            raise InventoryError(f"inventory {path}: hosts of group {group!r} must be a mapping",
                                 hint="write `hosts: {name: {ansible_host: ...}}`")
        for pattern, hv in hosts.items():
            if hv is not None and not isinstance(hv, dict):
                raise InventoryError(f"inventory {path}: host {pattern!r} must map to vars",
                                     hint=f"write `{pattern}: {{ansible_host: ADDRESS}}`")
            for name in expand_pattern(str(pattern), path):
                host_vars.setdefault(name, {}).update(hv or {})
                group_hosts[group].add(name)
        kids = body.get("children") or {}
        if not isinstance(kids, dict):
            raise InventoryError(f"inventory {path}: children of {group!r} must be a mapping",
                                 hint="write `children: {group: {hosts: ...}}`")
        for child, child_body in kids.items():
            child = str(child)
            children.setdefault(group, [])
            if child not in children[group]:
                children[group].append(child)
            walk(child, child_body, trail + (group,))

    for top, body in data.items():
        walk(str(top), body, ())
        if str(top) != "all":
            children.setdefault("all", []).append(str(top))

    depth: dict[str, int] = {}

    def set_depth(group: str, d: int, trail: tuple = ()):
        if group in trail:
            return
        if d > depth.get(group, -1):
            depth[group] = d
        for c in children.get(group, []):
            set_depth(c, d + 1, trail + (group,))

    set_depth("all", 0)
    members: dict[str, list] = {}

    def collect(group: str, trail: tuple = ()) -> set:
        if group in trail:
            return set()
        out = set(group_hosts.get(group, set()))
        for c in children.get(group, []):
            out |= collect(c, trail + (group,))
        return out

    order = list(host_vars)  # file order
    for g in set(group_hosts) | set(children):
        s = collect(g)
        members[g] = [n for n in order if n in s]
    members["all"] = order

    ssh_cfg = _ssh_config(ssh_config)
    hosts: dict[str, Host] = {}
    for name in order:
        groups = sorted((g for g in members if name in members[g] and g != "all"),
                        key=lambda g: (depth.get(g, 1), g))
        merged: dict[str, Any] = dict(group_vars.get("all", {}))
        for g in groups:
            merged.update(group_vars.get(g, {}))
        merged.update(host_vars[name])
        hosts[name] = _make_host(name, merged, groups, path, ssh_cfg)
    return Inventory(path=path, hosts=hosts,
                     groups={g: m for g, m in members.items() if g not in ("all", "ungrouped")})


def expand_pattern(pattern: str, path: str) -> list[str]:
    """Ansible host ranges: web[01:03] -> web01, web02, web03; [a:c] for letters."""
    m = re.search(r"\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::(\d+))?\]", pattern)
    if not m:
        return [pattern]
    lo, hi, step = m.group(1), m.group(2), int(m.group(3) or 1)
    head, tail = pattern[:m.start()], pattern[m.end():]
    if lo.isdigit() and hi.isdigit():
        width = len(lo) if lo.startswith("0") else 0
        values = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1, step)]
    elif len(lo) == 1 and len(hi) == 1 and lo.isalpha() and hi.isalpha():
        values = [chr(c) for c in range(ord(lo), ord(hi) + 1, step)]
    else:
        raise InventoryError(f"inventory {path}: bad host range in {pattern!r}",
                             hint="use name[01:10] or name[a:f]")
    out: list[str] = []
    for v in values:
        out.extend(expand_pattern(head + v + tail, path))
    return out


def _ssh_config(path: str | None):
    if not path:
        return None
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        return None
    import paramiko

    try:
        return paramiko.SSHConfig.from_path(path)
    except Exception as exc:  # noqa: BLE001 - a broken ssh config is a bad input
        raise InventoryError(f"cannot parse SSH config {path}: {exc}", hint="fix that file")


def _as_bool(value: Any, key: str, host: str, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in TRUE_WORDS:
        return True
    if str(value).strip().lower() in FALSE_WORDS:
        return False
    raise InventoryError(f"inventory {path}: host {host!r}: {key} must be true or false, "
                         f"got {value!r}", hint=f"write `{key}: true`")


def _make_host(name: str, v: dict, groups: list, path: str, ssh_cfg) -> Host:
    if not name.strip():
        raise InventoryError(f"inventory {path}: a host has an empty name", hint="name every host")
    cfg = ssh_cfg.lookup(name) if ssh_cfg is not None else {}
    if "ansible_host" in v and (v["ansible_host"] is None or not str(v["ansible_host"]).strip()):
        raise InventoryError(f"inventory {path}: host {name!r} has an empty ansible_host",
                             hint="set ansible_host to the device's address or remove the key")
    address = str(v.get("ansible_host") or cfg.get("hostname") or name).strip()
    if any(c.isspace() for c in address) or address.startswith("-"):
        raise InventoryError(f"inventory {path}: host {name!r} has no usable address "
                             f"({address!r})", hint=f"set ansible_host for {name!r}")
    port_value = v.get("ansible_port", v.get("ansible_ssh_port", cfg.get("port", 22)))
    try:
        port = int(port_value)
        if not 0 < port < 65536:
            raise ValueError
    except (TypeError, ValueError):
        raise InventoryError(f"inventory {path}: host {name!r}: ansible_port must be a port "
                             f"number, got {port_value!r}", hint="write `ansible_port: 22`")
    user = v.get("ansible_user", v.get("ansible_ssh_user", cfg.get("user")))
    key = v.get("ansible_ssh_private_key_file", v.get("ansible_private_key_file"))
    if key is None and cfg.get("identityfile"):
        key = cfg["identityfile"][0]
    interp = v.get("ansible_python_interpreter") or "python3"
    if isinstance(interp, str) and interp.strip() in ("auto", "auto_silent", "auto_legacy"):
        interp = "python3"
    try:
        python = shlex.split(str(interp))
    except ValueError as exc:
        raise InventoryError(f"inventory {path}: host {name!r}: bad ansible_python_interpreter "
                             f"{interp!r}: {exc}", hint="give a path such as /usr/bin/python3")
    root = v.get("edgepack_root") or DEFAULT_ROOT
    keep_value = v.get("edgepack_keep", DEFAULT_KEEP)
    try:
        keep = int(keep_value)
        if keep < 2:
            raise ValueError
    except (TypeError, ValueError):
        raise InventoryError(f"inventory {path}: host {name!r}: edgepack_keep must be an integer "
                             f">= 2 (current and previous), got {keep_value!r}",
                             hint="write `edgepack_keep: 3`")
    return Host(name=name, address=address, port=port,
                user=str(user) if user is not None else getpass.getuser(),
                key_file=os.path.expanduser(str(key)) if key else None,
                python=python or ["python3"], root=str(root),
                profile=str(v["edgepack_profile"]) if v.get("edgepack_profile") else None,
                require_signature=_as_bool(v.get("edgepack_require_signature", False),
                                           "edgepack_require_signature", name, path),
                allowed_signers=str(v["edgepack_allowed_signers"])
                if v.get("edgepack_allowed_signers") else None,
                keep=keep, groups=groups, vars=dict(v))
