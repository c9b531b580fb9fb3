"""Fleet commands: push, status, rollback, keygen."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import live
from .output import echo, err, guarded, print_json, table

INVENTORY_HELP = "Ansible YAML inventory (all/children/hosts/vars)"
COMMAND_TIMEOUT_HELP = ("seconds any device command but the self-test may take; past it the "
                        "command's processes on the device are ended")
LIMIT_HELP = "hosts or groups, comma-separated, globs allowed, !name excludes"


def _hosts(inventory: Path, limit: Optional[str]):
    from ..fleet import load_inventory

    inv = guarded(load_inventory, str(inventory))
    return guarded(inv.select, limit)


def _options(**kw):
    from ..fleet import FleetOptions

    return guarded(FleetOptions, **kw)


def _short(rid: Optional[str]) -> str:
    return rid[:12] if rid else "-"


def _verdict(v) -> str:
    if not isinstance(v, dict):
        return "-"
    return "pass" if v.get("passed") else (v.get("status") or "fail")


def _p50(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _emit(result, as_json: bool) -> None:
    from ..compat import describe

    if as_json:
        print_json(result.to_dict())
    else:
        rows = []
        for d in result.devices:
            if result.action == "status":
                what = (d.detail or {}).get("name") or "-"
                if (d.detail or {}).get("version"):
                    what += f" {d.detail['version']}"
                rows.append([d.host, d.status, _short(d.current), what, _verdict(d.verdict),
                             _p50(d.p50_ms), describe(d.facts) if d.facts else "-",
                             d.reason or ""])
            else:
                rows.append([d.host, d.status, d.step or "-", _short(d.current), _verdict(d.verdict),
                             _p50(d.p50_ms), f"{d.seconds:.1f}", d.reason or ""])
        if result.action == "status":
            header = ["HOST", "STATUS", "CURRENT", "RELEASE", "LAST VERDICT", "P50 MS", "FACTS",
                      "REASON"]
        else:
            header = ["HOST", "STATUS", "STEP", "CURRENT", "VERDICT", "P50 MS", "SECONDS", "REASON"]
        echo(table(rows, header))
        summary = result.summary()
        echo(f"{result.action}: " + ", ".join(f"{n} {s}" for s, n in summary.items())
             + f" in {result.seconds:.1f}s")
    if result.halted:
        err(f"edgepack: halted: {result.halted}")
    for d in result.devices:
        if not d.ok and d.status != "skipped":
            hint = f" (fix: {d.hint})" if d.hint else ""
            err(f"edgepack: {d.reason}{hint}")
    raise typer.Exit(result.exit_code)


def _device_command(action: str):
    """status / rollback: the same options, one library function each."""
    def command(
        inventory: Path = typer.Option(..., "--inventory", "-i", help=INVENTORY_HELP),
        limit: Optional[str] = typer.Option(None, "--limit", "-l", help=LIMIT_HELP),
        forks: int = typer.Option(16, "--forks", "-f"),
        known_hosts: Optional[Path] = typer.Option(None, "--known-hosts"),
        connect_timeout: float = typer.Option(10.0, "--connect-timeout"),
        command_timeout: float = typer.Option(300.0, "--command-timeout", help=COMMAND_TIMEOUT_HELP),
        as_json: bool = typer.Option(False, "--json", help="machine-readable result on stdout"),
    ):
        from .. import fleet

        hosts = _hosts(inventory, limit)
        opts = _options(forks=forks, connect_timeout=connect_timeout,
                        command_timeout=command_timeout,
                        known_hosts=str(known_hosts) if known_hosts else None)
        _emit(live.fleet_run(action, as_json, getattr(fleet, action), hosts, opts), as_json)
    return command


def register(app: typer.Typer) -> None:
    @app.command()
    def push(
        bundle: Optional[Path] = typer.Argument(None, help="bundle folder (or .tar.gz) from "
                                                           "`edgepack build` (or --from REF)"),
        inventory: Path = typer.Option(..., "--inventory", "-i", help=INVENTORY_HELP),
        limit: Optional[str] = typer.Option(None, "--limit", "-l", help=LIMIT_HELP),
        forks: int = typer.Option(16, "--forks", "-f", help="devices at once"),
        canary: int = typer.Option(0, "--canary", help="push N devices first; stop if any fails"),
        max_fail: Optional[float] = typer.Option(None, "--max-fail",
                                                 help="stop starting devices once more than PCT "
                                                      "percent of them failed"),
        known_hosts: Optional[Path] = typer.Option(None, "--known-hosts",
                                                   help="known hosts file (default "
                                                        "~/.ssh/known_hosts)"),
        accept_new_hosts: bool = typer.Option(False, "--accept-new-hosts",
                                              help="trust and record unknown host keys (first "
                                                   "use only; a changed key is still refused)"),
        connect_timeout: float = typer.Option(10.0, "--connect-timeout", help="seconds"),
        selftest_timeout: float = typer.Option(600.0, "--selftest-timeout", help="seconds"),
        command_timeout: float = typer.Option(300.0, "--command-timeout", help=COMMAND_TIMEOUT_HELP),
        force_compat: bool = typer.Option(False, "--force-compat",
                                          help="push even to devices the compatibility guard "
                                               "refuses (old runtime, missing provider ...)"),
        retest: bool = typer.Option(False, "--retest",
                                    help="self-test again on devices whose current release is "
                                         "this bundle"),
        reports: Path = typer.Option(Path("edgepack-reports"), "--reports",
                                     help="where each device's report is stored (per host)"),
        as_json: bool = typer.Option(False, "--json", help="machine-readable result on stdout"),
        from_ref: Optional[str] = typer.Option(None, "--from", help="REGISTRY/REPO:TAG: devices "
                                               "pull it from the registry (docs/SCALE.md)"),
        plain_http: bool = typer.Option(False, "--plain-http", help="with --from: the registry "
                                        "speaks HTTP, not TLS"),
        ca_file: Optional[Path] = typer.Option(None, "--ca-file", help="with --from: the "
                                               "registry's CA on this host"),
        credentials: Optional[Path] = typer.Option(None, "--credentials", help="with --from: "
                                                   "Docker-style config.json on this host"),
    ):
        """Push a bundle to devices: stage, verify, self-test, activate only on a pass."""
        from ..fleet import push as push_bundle

        hosts = _hosts(inventory, limit)
        opts = _options(forks=forks, canary=canary, max_fail=max_fail,
                        known_hosts=str(known_hosts) if known_hosts else None,
                        accept_new_hosts=accept_new_hosts, connect_timeout=connect_timeout,
                        selftest_timeout=selftest_timeout, reports_dir=str(reports),
                        command_timeout=command_timeout, force_compat=force_compat,
                        retest=retest)
        if from_ref is not None or bundle is None:
            from ..fleet import push_from
            from .publish import pull_options

            popts = pull_options(bundle, from_ref, plain_http, ca_file, credentials)
            _emit(live.fleet_run("push", as_json, push_from, from_ref, hosts, opts, popts), as_json)
        _emit(live.fleet_run("push", as_json, push_bundle, str(bundle), hosts, opts), as_json)

    for action, doc in (("status", "What is current on each device, its last verdict and p50 latency."),
                        ("rollback", "Switch each device back to its `previous` release (and remember "
                                     "the current one).")):
        app.command(name=action, help=doc)(_device_command(action))

    @app.command()
    def keygen(
        key: Path = typer.Argument(Path("edgepack-signing-key"), help="private key path to write"),
        force: bool = typer.Option(False, "--force", help="replace an existing key"),
        as_json: bool = typer.Option(False, "--json"),
    ):
        """Create an ed25519 signing key for `build --sign-key` and the devices' allowed_signers."""
        from .. import signing

        out = guarded(signing.keygen, str(key), force=force)
        if as_json:
            print_json(out)
            return
        echo(f"private key      {out['private_key']}  (keep it off the devices)")
        echo(f"public key       {out['public_key']}")
        echo(f"allowed_signers  {out['allowed_signers']}")
        echo("on each device that must require signatures, install the allowed_signers "
                   "file as <edgepack_root>/allowed_signers (default ~/.edgepack/allowed_signers) "
                   "and set edgepack_require_signature: true in the inventory")
        echo(f"sign bundles with: edgepack build ... --sign-key {out['private_key']}")
