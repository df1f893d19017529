"""The `host` section of the hypervisor config: what the Proxmox node itself must have (the `host:*` tasks)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .rules import STORAGE_ID, absolute_problem
from .strict import Strict

Content = Literal["images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"]

# The privileges Phoenix uses through the API, exactly: the role `host:access` makes for Phoenix's own user and
# token. Settings Proxmox allows only to root@pam (devN, bind mounts, feature flags other than nesting, some VM
# options) go through the node's SSH instead.
PRIVILEGES = (
    "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
    "Pool.Allocate", "Pool.Audit", "SDN.Use", "Sys.Audit", "Sys.Modify",
    "VM.Allocate", "VM.Audit", "VM.Clone", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit",
    "VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options",
    "VM.Backup", "VM.GuestAgent.Unrestricted", "VM.Migrate", "VM.PowerMgmt", "VM.Snapshot",
)


class StorageSpec(Strict):
    """A storage the node must have, with these content types (made if missing, its content set if different)."""

    id: str = Field(..., pattern=STORAGE_ID)
    type: Literal["dir", "lvmthin", "zfspool"]
    content: list[Content] = Field(..., min_length=1)
    path: str | None = Field(None, pattern=r"^/[^\s,]*$", description="dir: its directory")

    @field_validator("path")
    @classmethod
    def _normal_path(cls, value: str | None) -> str | None:
        said = absolute_problem(value) if value is not None else None
        if said is not None:
            raise ValueError(said)
        return value
    vgname: str | None = Field(None, description="lvmthin: the volume group")
    thinpool: str | None = Field(None, description="lvmthin: the thin pool")
    pool: str | None = Field(None, description="zfspool: the ZFS pool (or dataset)")

    @model_validator(mode="after")
    def _shape(self) -> StorageSpec:
        need = {"dir": ("path",), "lvmthin": ("vgname", "thinpool"), "zfspool": ("pool",)}[self.type]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a {self.type} storage needs {' and '.join(missing)}")
        return self


class NewDisk(Strict):
    """A ZFS pool or LVM-thin pool to make on a raw disk: only on a disk that holds nothing, only when `confirm`
    names the disk again (the explicit flag), and it becomes a storage of that name."""

    device: str = Field(..., pattern=r"^/dev/[A-Za-z0-9/_.:-]+$")
    kind: Literal["zfs", "lvmthin"]
    name: str = Field(..., pattern=STORAGE_ID)
    content: list[Content] = Field(default_factory=lambda: ["images", "rootdir"])  # type: ignore[arg-type]
    confirm: str = Field(..., description="the same device again: Phoenix writes a new pool on it")

    @model_validator(mode="after")
    def _confirmed(self) -> NewDisk:
        if self.confirm != self.device:
            raise ValueError(f'making a pool writes over {self.device}: set "confirm": "{self.device}" to say so (Phoenix '
                             "also checks first that the disk holds nothing)")
        return self


class HostStorage(Strict):
    storages: list[StorageSpec] = Field(default_factory=list)
    new_disks: list[NewDisk] = Field(default_factory=list)


class Bridge(Strict):
    """A Linux bridge of the node (made if missing, changed to this if different; never removed)."""

    name: str = Field(..., pattern=r"^vmbr\d{1,4}$")
    ports: list[str] = Field(default_factory=list, description="physical ports, e.g. [\"eno2\"]")
    vlan_aware: bool = False
    cidr: ipaddress.IPv4Interface | None = None
    gateway: ipaddress.IPv4Address | None = None
    comments: str | None = None


class HostNetwork(Strict):
    bridges: list[Bridge] = Field(default_factory=list)
    allow_management_change: bool = Field(False, description="allow changing the bridge that carries the node's "
                                           "management address (the API's): a mistake there cuts the node off")


class HostAccess(Strict):
    """A Phoenix user, a role with exactly the privileges Phoenix uses, and an API token with privilege separation,
    its secret written to `token_file` (0600): nobody needs a root@pam token for the API."""

    user: str = Field("phoenix@pve", pattern=r"^[^@!\s:]+@[A-Za-z][A-Za-z0-9._-]*$")
    role: str = Field("Phoenix", pattern=r"^[A-Za-z][A-Za-z0-9._-]*$")
    token: str = Field("phoenix", pattern=r"^[A-Za-z][A-Za-z0-9._-]*$")
    token_file: str = Field(..., description="where the new token's secret is written (0600), relative to the config dir")


class HostRepos(Strict):
    """The node's package repositories, through the APT repositories API."""

    enterprise: bool | None = Field(None, description="false: switch the enterprise repositories off")
    no_subscription: bool | None = Field(None, description="true: the no-subscription repository on")


class HostNvidia(Strict):
    """The NVIDIA driver on the node, at nvidia.driver_version (the version the guests' nvidia feature matches)."""

    installer_url: str = Field(
        "https://download.nvidia.com/XFree86/Linux-x86_64/{version}/NVIDIA-Linux-x86_64-{version}.run",
        description="where the node fetches the .run installer; {version} is replaced")
    installer_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class HostConfig(Strict):
    """What the node must have; each part present is a `host:<part>` task."""

    storage: HostStorage | None = None
    network: HostNetwork | None = None
    access: HostAccess | None = None
    repos: HostRepos | None = None
    nvidia: HostNvidia | None = None

    def parts(self) -> list[str]:
        """The parts declared, in the order they are set up."""
        return [p for p in ("repos", "storage", "network", "access", "nvidia") if getattr(self, p) is not None]
