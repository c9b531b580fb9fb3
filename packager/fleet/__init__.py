"""Fleets over SSH: push a bundle, ask each device's status, roll back.

The public API (what `edgepack push/status/rollback` call):

    from packager.fleet import FleetOptions, load_inventory, push
    hosts = load_inventory("fleet.yaml").select("cameras")
    result = push("dist/bundle", hosts, FleetOptions(canary=1))   # connect=... for another transport
    result.exit_code, result.failed, result["cam01"].reason

Rooms, in the order data flows: inventory (hosts) and options -> rollout (push) / manage (status,
rollback) -> fanout (one thread per device) -> remote (the device's commands) -> transports
(local, ssh) ; each device ends as a DeviceResult in a FleetResult (results).
"""
from packager.fleet.bundles import Bundle, open_bundle
from packager.fleet.inventory import Host, Inventory
from packager.fleet.inventory import load as load_inventory
from packager.fleet.inventory import parse as parse_inventory
from packager.fleet.manage import rollback, status
from packager.fleet.options import FleetOptions
from packager.fleet.pull import PullOptions, push_from
from packager.fleet.remote import Device, DeviceRefused
from packager.fleet.results import DeviceResult, FleetResult
from packager.fleet.rollout import push
from packager.fleet.transports import CommandTimeout, HostKeyError, Transport, TransportError
from packager.fleet.transports.local import LocalTransport
from packager.fleet.transports.ssh import SSHTransport

__all__ = ["Bundle", "CommandTimeout", "Device", "DeviceRefused", "DeviceResult", "FleetOptions",
           "FleetResult", "Host", "HostKeyError", "Inventory", "LocalTransport", "SSHTransport",
           "PullOptions", "Transport", "TransportError", "load_inventory", "open_bundle",
           "parse_inventory", "push", "push_from", "rollback", "status"]
