"""The vocabulary of a topology spread over several machines: `hosts:` (each machine's underlay
address and interface, how Ansible reaches it, and what runs on it) and `overlay:` (how root
bridges that span machines are tunnelled). Checked field by field here; how these relate to the
rest of the topology is checked in `nsgen.fleet.place`."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from nsgen.fields import IfName, IpAddr, NsName, Strict

DEFAULT_UNDERLAY = "eth0"
VXLAN_PORT = 4789
"""IANA's VXLAN port, the Linux default for a device given `dstport`."""
VNI_BASE = 4096
"""Overlays without a given VNI take 4096, 4097, ... in bridge declaration order (VNI 1 is
flannel's, and low numbers are where people put their own)."""

_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def _host_name(value: str) -> str:
    if not _HOST_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid host name: use letters, digits, '_' and '-' (it names "
            "the host's bundle directory, its Ansible inventory entry and its topology "
            "<topology>-<host>)"
        )
    return value


def _ansible_text(value: str) -> str:
    """A value that goes into the Ansible inventory as it is: one printable line, and nothing
    Ansible would read as a template (it templates every string of an inventory)."""
    if not value.isprintable():
        raise ValueError(f"{value!r} must be one line of printable text")
    for opener in ("{{", "{%", "{#"):
        if opener in value:
            raise ValueError(f"{value!r} holds {opener!r}, which Ansible would read as a template")
    return value


FleetHostName = Annotated[str, AfterValidator(_host_name)]
AnsibleText = Annotated[str, AfterValidator(_ansible_text)]


class AnsibleConnection(Strict):
    """How Ansible reaches a host: its behavioural inventory variables, written into the
    inventory as given. Secrets (passwords) are left out on purpose: use ssh keys, ansible-vault
    or --ask-pass, not a topology file."""

    ansible_host: AnsibleText | None = Field(
        None, description="Address or name to connect to. Default: the host's address."
    )
    ansible_port: int | None = Field(None, ge=1, le=65535, description="ssh port.")
    ansible_user: AnsibleText | None = Field(None, description="User to log in as.")
    ansible_connection: AnsibleText | None = Field(
        None, description="Connection plugin (ssh, local, ...)."
    )
    ansible_ssh_private_key_file: AnsibleText | None = Field(
        None, description="Private key to log in with."
    )
    ansible_ssh_common_args: AnsibleText | None = Field(
        None, description="Extra arguments for ssh, sftp and scp."
    )
    ansible_ssh_extra_args: AnsibleText | None = Field(
        None, description="Extra arguments for ssh only."
    )
    ansible_become: bool | None = Field(
        None, description="Become root (the scripts need root) when ansible_user is not."
    )
    ansible_become_method: AnsibleText | None = Field(None, description="sudo, su, ...")
    ansible_become_user: AnsibleText | None = Field(None, description="Default: root.")
    ansible_python_interpreter: AnsibleText | None = Field(
        None, description="Python on the host, for Ansible's own modules."
    )


class FleetHost(Strict):
    """One machine the topology is spread over."""

    address: IpAddr = Field(
        description="The host's IPv4 address on the underlay (the network between the "
        "machines): the source of its VXLAN packets and where the others send theirs."
    )
    dev: IfName = Field(
        DEFAULT_UNDERLAY,
        description="The underlay interface holding `address`; used, never created or removed.",
    )
    place: list[NsName] = Field(
        default_factory=list,
        description="What runs on this host: namespaces, containers and Kubernetes nodes, by "
        "name (a node's pods go with it; a node becomes the host's own network stack).",
    )
    ansible: AnsibleConnection = Field(
        default_factory=AnsibleConnection,
        description="How Ansible reaches the host (an inventory entry's connection variables).",
    )


class Overlay(Strict):
    """How root bridges with ports on several hosts are joined across them."""

    port: int = Field(VXLAN_PORT, ge=1, le=65535, description="UDP port of the overlays.")
    vni: dict[IfName, int] = Field(
        default_factory=dict,
        description=f"VNI by bridge name (1-16777215). Default: {VNI_BASE}, {VNI_BASE + 1}, ... "
        "in the order the bridges are declared.",
    )


class FleetSugar(Strict):
    """The keys this stage owns, as one model."""

    hosts: dict[FleetHostName, FleetHost] = Field(
        default_factory=dict,
        description="The machines the topology is spread over, by name (docs/fleet.md).",
    )
    overlay: Overlay = Field(
        default_factory=Overlay, description="Tunnels for root bridges that span hosts."
    )
