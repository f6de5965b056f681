"""The registry of kinds: KINDS, in the order the planner asks them for their steps (each
layer needs the one before it: an address needs its link, a route its address). A new kind
is a module in nsgen/kinds/, a template in templates/kinds/ and one line here."""

from __future__ import annotations

from nsgen.kinds.addressing import AddressKind, FdbKind, NeighborKind, RouteKind
from nsgen.kinds.base import Kind
from nsgen.kinds.commands import ExecKind
from nsgen.kinds.files import DnsKind
from nsgen.kinds.firewall import ChainKind, MasqueradeKind, RuleKind, TableKind
from nsgen.kinds.links import BridgeKind, ExternalKind, VethKind, VxlanKind
from nsgen.kinds.namespaces import NamespaceKind
from nsgen.kinds.settings import SysctlKind
from nsgen.kinds.shaping import ShapingKind

KINDS: tuple[Kind, ...] = (
    NamespaceKind(),
    BridgeKind(),
    AddressKind(),
    VethKind(),
    VxlanKind(),
    ShapingKind(),
    RouteKind(),
    NeighborKind(),
    FdbKind(),
    TableKind(),
    ChainKind(),
    RuleKind(),
    MasqueradeKind(),
    SysctlKind(),
    DnsKind(),
    ExecKind(),
    ExternalKind(),
)

_BY_STEP: dict[str, Kind] = {step: kind for kind in KINDS for step in kind.step_kinds()}


def kind_of(step_kind: str) -> Kind:
    """The kind that plans steps of `step_kind` (KeyError for a batched step's kind)."""
    return _BY_STEP[step_kind]
