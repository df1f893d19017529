"""`phoenix_lxc_configs.json`: every LXC template and container, keyed by CTID."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from .hypervisor import Strict

HOSTNAME = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
MAC = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"
SNAPSHOT = r"^[A-Za-z][A-Za-z0-9_-]{1,39}$"
TAG = r"^[a-z0-9_][a-z0-9_+.-]*$"


def _gpu_list(value: object) -> object:
    """Accept the seed's "0,1" string as well as a list of indexes."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if value.strip().lower() in ("", "none"):
            return []
        try:
            return [int(p) for p in parts]
        except ValueError:
            raise ValueError('expected GPU indexes such as "0,1" or [0, 1]') from None
    return value


GpuList = Annotated[
    list[Annotated[int, Field(ge=0)]],
    BeforeValidator(_gpu_list),
    WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": "integer", "minimum": 0}},
                              {"type": "string", "pattern": r"^\s*(none|\d+(\s*,\s*\d+)*)?\s*$"}]}),
]


class NetworkConfig(Strict):
    """net0 of the container."""

    name: str = Field("eth0", pattern=r"^[a-z][a-z0-9]{0,14}$")
    bridge: str | None = Field(None, description="Defaults to network.bridge of the hypervisor config.")
    ip: Literal["dhcp"] | ipaddress.IPv4Interface = Field(..., description='"dhcp" or an address with prefix, 10.0.0.50/24.')
    gw: ipaddress.IPv4Address | None = Field(None, description="Defaults to network.gateway of the hypervisor config.")
    firewall: bool = False

    @model_validator(mode="after")
    def _gateway_in_subnet(self) -> NetworkConfig:
        if self.ip != "dhcp" and self.gw is not None and self.gw not in self.ip.network:
            raise ValueError(f"gateway {self.gw} is not in the subnet {self.ip.network} of ip {self.ip}")
        return self


class PctFeatures(Strict):
    """Proxmox container feature flags. Only nesting may be set with an API token; the rest goes through SSH."""

    nesting: bool = False
    keyctl: bool = False
    fuse: bool = False
    mknod: bool = False


class MountPoint(Strict):
    """A mount point. Bind mounts of host paths keep their data across rebuilds; volumes do not."""

    container_path: str = Field(..., pattern=r"^/[^\s,=]*$")
    host_path: str | None = Field(None, pattern=r"^/[^\s,=]*$", description="Bind-mount this host directory.")
    storage: str | None = Field(None, description="Allocate a new volume on this storage (scratch data).")
    size_gb: int | None = Field(None, ge=1)
    read_only: bool = False
    persistent: bool = Field(False, description="Data must survive rebuilds: only bind mounts can promise that.")

    @model_validator(mode="after")
    def _kind(self) -> MountPoint:
        if (self.host_path is None) == (self.storage is None):
            raise ValueError("give either host_path (a bind mount) or storage + size_gb (a volume)")
        if self.storage is not None and self.size_gb is None:
            raise ValueError("a volume mount point needs size_gb")
        if self.persistent and self.host_path is None:
            raise ValueError(
                "a volume is destroyed with its container on a rebuild; for persistent data use host_path "
                "(a bind mount of a host directory)"
            )
        return self


class UserConfig(Strict):
    username: str = Field(..., pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    ssh_public_key: str | None = None
    sudo: bool = True


class LxcGuest(Strict):
    """One template layer or application container."""

    name: str = Field(..., pattern=HOSTNAME, description="Hostname, and the name Proxmox lists.")
    description: str = ""
    template: str | None = Field(None, description="OS template key (os_templates in the hypervisor config); root layers only.")
    clone_from_ctid: int | None = Field(None, ge=100, description="Parent layer; this guest is cloned from it.")
    template_snapshot_name: str | None = Field(
        None, pattern=SNAPSHOT, description="Snapshot taken once built; children clone from it."
    )
    convert_to_template: bool = Field(False, description="Make a Proxmox template; children become linked clones.")
    memory_mb: int = Field(2048, ge=16)
    swap_mb: int = Field(512, ge=0)
    cores: int = Field(2, ge=1, le=512)
    storage_pool: str | None = Field(None, description="Root file system storage; defaults to storage.rootdir.")
    storage_size_gb: int = Field(16, ge=1, le=65536)
    network_config: NetworkConfig | None = None
    mac_address: str | None = Field(None, pattern=MAC)
    nameservers: list[ipaddress.IPv4Address] | None = None
    unprivileged: bool = True
    pct_features: PctFeatures = Field(default_factory=PctFeatures)
    features: list[str] = Field(default_factory=list, description="Feature scripts (images/features/<name>.sh), in order.")
    application_script: str | None = Field(None, description="App script under images/apps/, run after the features.")
    gpu_assignment: GpuList = Field(default_factory=list, description='GPU indexes, [0, 1] or "0,1".')
    mount_points: list[MountPoint] = Field(default_factory=list)
    onboot: bool = False
    protection: bool = False
    tags: list[Annotated[str, Field(pattern=TAG)]] = Field(default_factory=list)
    feature_timeout_s: float | None = Field(None, gt=0)
    # base_setup
    locale: str = "en_US.UTF-8"
    extra_packages: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+$")]] = Field(default_factory=list)
    unattended_upgrades: bool = False
    user_config: UserConfig | None = None
    # 910: Portainer
    portainer_role: Literal["server", "agent", "none"] = "none"
    portainer_port: int = Field(9443, ge=1, le=65535)
    portainer_version: str = Field("2.21.4", pattern=r"^[0-9][0-9A-Za-z.-]*$")
    # 950: vLLM
    vllm_version: str = Field("0.10.1.1", pattern=r"^[0-9][0-9A-Za-z.+-]*$")
    vllm_model: str | None = None
    vllm_served_model_name: str | None = None
    vllm_port: int = Field(8000, ge=1, le=65535)
    vllm_max_model_len: int | None = Field(None, ge=128)
    vllm_gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    vllm_dtype: str = Field("auto", pattern=r"^[a-z0-9_]+$")
    vllm_args: list[str] = Field(default_factory=list)

    @field_validator("features")
    @classmethod
    def _unique_features(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a feature is listed twice")
        return v

    @model_validator(mode="after")
    def _shape(self) -> LxcGuest:
        if self.template_snapshot_name and self.convert_to_template:
            raise ValueError(
                "choose template_snapshot_name or convert_to_template: Proxmox cannot make a template "
                "of a container that has snapshots"
            )
        if self.clone_from_ctid is None and not self.template:
            raise ValueError("a root layer (no clone_from_ctid) needs template, the OS template to create it from")
        if self.clone_from_ctid is not None and self.template:
            raise ValueError("a clone inherits its OS from clone_from_ctid; remove template")
        return self

    @property
    def is_template_layer(self) -> bool:
        """A layer others are cloned from: snapshotted or converted to a Proxmox template."""
        return bool(self.template_snapshot_name) or self.convert_to_template


class LxcConfigs(Strict):
    """The file: global NVIDIA settings of the seed, and the guests keyed by CTID."""

    schema_ref: str | None = Field(None, alias="$schema")
    lxc_configs: dict[Annotated[str, Field(pattern=r"^[1-9][0-9]{2,8}$")], LxcGuest]

    def guests(self) -> dict[int, LxcGuest]:
        return {int(k): v for k, v in self.lxc_configs.items()}
