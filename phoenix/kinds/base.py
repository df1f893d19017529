"""What every kind of resource implements, and the narrow context its builds get from the run.

A kind is shaped like a provider's resource life cycle (Terraform's, Pulumi's dynamic providers): it makes
its resources from its config slice (validated by the config models), reads their facts from the run's bulk
listing, tells the planner what only it knows (`foreign`, `compare`), reads what a build needs and checks it
before anything is written (`prepare`), and turns a decision into steps (`steps`): bake, update in place,
destroy. The run, the planner, doit's tasks, `plan`, `forget`, the reporter and last-run.json work on any kind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import PhoenixError

T = TypeVar("T")

if TYPE_CHECKING:
    from ..config.estate import Estate
    from ..facts.node import NodeFacts
    from ..hostview import HostView
    from ..plan import Action, Decision, Why
    from ..portainer.target import PortainerTarget
    from ..pve.client import Pve
    from ..resources import Resource
    from ..steps import Step
    from ..transport.node import Node


def _no_portainer() -> PortainerTarget:
    raise PhoenixError("this estate has no Portainer server (no guest chooses docker_stacks)")


@dataclass
class Context:
    """What a kind may use to prepare and plan a build: the run hands out this, not itself.

    `once` keeps what several builds of a run read alike (the node's storages, the SSH check) to one read. A kind
    gets the context `at` the node its resource is built or changed on: `node`, `transport` and `node_facts` are that
    member's, and `once` keeps each member's reads apart."""

    estate: Estate
    node: str                                   # the Proxmox node's name (the resource's member; else the API's)
    pve: Callable[[], Pve]                      # the API (made on first use)
    view: HostView                              # the run's view of the host's guests
    transport: Callable[[], Node]               # the node's shell operations (made on first use)
    node_facts: Callable[[], NodeFacts]         # read once per run
    owner: str                                  # this run's id (in the tags of what it builds)
    allow_protected: Callable[[int], bool]      # the user's explicit flag for protected guests
    simulated: bool = False
    api_host: str = ""                          # the API's host name (the node's management address)
    artifacts: Path | None = None               # the artifact store's directory (archives restored from it)
    read: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    portainer_target: Callable[[], PortainerTarget] = field(default=lambda: _no_portainer())
    placed: Callable[[str], Any] = field(default=lambda _key: None)   # a guest's placement (cluster.placement.Placed)
    copy_vmid: Callable[[str, int], int] | None = None                # (member, layer's VMID) -> its copy's VMID there
    transports: Callable[[str], Node] | None = None          # any member's shell operations, by name
    facts_of_node: Callable[[str], NodeFacts] | None = None  # any member's NVIDIA facts, by name
    scope: str = ""                                          # the member `once` keeps reads for

    def at(self, node: str | None) -> Context:
        """This context on a member of the cluster (None or the same node: itself)."""
        if node is None or node == self.node or self.transports is None or self.facts_of_node is None:
            return self
        transports, facts = self.transports, self.facts_of_node
        return replace(self, node=node, transport=lambda: transports(node), node_facts=lambda: facts(node), scope=node)

    def once(self, key: str, fetch: Callable[[], T]) -> T:
        """fetch() the first time a run asks for key (on this member); the same answer (or the same error) after."""
        key = f"{self.scope}:{key}" if self.scope else key
        with self.lock:
            if key not in self.read:
                try:
                    self.read[key] = fetch()
                except PhoenixError as e:
                    self.read[key] = e
            found = self.read[key]
        if isinstance(found, PhoenixError):
            raise found
        return found


@dataclass(frozen=True)
class Prepared:
    """What `prepare` read for one build: kind-specific data for `steps`, and the problems that stop the run."""

    data: Any = None
    problems: tuple[str, ...] = ()


class Kind(Protocol):
    name: str
    plan_checks: bool  # `doit plan` runs this kind's checks (prepare) for every stale resource: they are cheap reads

    def resources(self, estate: Estate) -> dict[str, Resource]:
        """Every resource of this kind in the estate, parents first."""

    def facts(self, res: Resource, view: HostView) -> Any:
        """What the run's bulk listing says about the resource (None: not on the host)."""

    def foreign(self, res: Resource, facts: Any) -> tuple[Why, str] | None:
        """Why what the host has there is not this resource's to replace, or None."""

    def compare(self, res: Resource, facts: Any, record: dict[str, Any] | None) -> tuple[Action, Why, tuple[str, ...]] | None:
        """A change the generic rules do not see: REBUILD or UPDATE and why, or None."""

    def record(self, res: Resource, ctx: Context) -> dict[str, Any]:
        """The record kept with the resource on the host (one read): what it was built from."""

    def prepare(self, res: Resource, decision: Decision, ctx: Context) -> Prepared:
        """Read what the build needs and check everything that can be checked before a write."""

    def steps(self, res: Resource, decision: Decision, prepared: Prepared, ctx: Context, *,
              build_id: str, parent_build: str | None, identity: str | None = None) -> list[Step]:
        """The build as data: a bake for BUILD/REBUILD, an update for UPDATE (identity: given when the parent's new
        build id is not known yet, as in `doit plan --steps`)."""
