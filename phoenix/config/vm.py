"""`phoenix_vm_configs.json`: the virtual machines, in seed 002's shape (`vm_defaults` + `virtual_machines[]`).

Each VM's keys override `vm_defaults`, which override Phoenix's defaults. Seed 004's spellings `vmid` and `name`
are read as `vm_id` and `vm_name`. A root layer is made from a cloud image (`cloud_image`, a key of
`cloud_images` in the hypervisor config); the others clone a template layer: `clone_from_vmid`, or the VM
layer that `template_name` names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, ConfigDict, Field, field_validator, model_validator

from .cluster import HaResource, NodeName
from .gateway import gateway_in_subnet
from .limits import DESCRIPTION_MAX_BYTES, MEMORY_MAX_MB, SCRIPT_TIMEOUT_MAX_S
from .lxc import HOSTNAME, SNAPSHOT, TAG, FeatureName
from .rules import USERNAME, IPv4, IPv4WithPrefix, VmId
from .stacks import StackChoices
from .strict import Strict

OS_TYPES = ("l26", "l24", "other", "win11", "win10", "win8", "win7", "w2k8", "wvista", "wxp", "w2k3", "w2k", "solaris")
NIC_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3")

# Phoenix's own defaults, under everything vm_defaults and a VM say.
BUILTIN: dict[str, Any] = {
    "os_type": "l26", "cpu_sockets": 1, "cpu_cores": 2, "memory_mb": 4096, "boot_disk_size_gb": 32,
    "boot_disk_storage": None, "network_bridge": None, "network_model": "virtio", "features": [],
    "docker_stacks": [], "tags": [], "template_name": None, "user_config": None, "feature_timeout_s": None,
    "node": None, "ha": None,
}


class VmNetworkConfig(Strict):
    """The VM's first NIC as cloud-init configures it (seed 004: ip with prefix, gw)."""

    ip: Literal["dhcp"] | IPv4WithPrefix = Field(..., description='"dhcp" or an address with prefix, 10.0.0.101/24.')
    gw: IPv4 | None = Field(None, description="Defaults to network.gateway of the hypervisor config.")
    nameservers: list[IPv4] | None = Field(
        None, description="Defaults to network.nameservers of the hypervisor config.")

    _gateway_in_subnet = field_validator("gw")(gateway_in_subnet)


class VmUserConfig(Strict):
    """The user cloud-init makes. A password hash is a secret: it is read from a 0600 file, never written here."""

    username: str = Field(..., pattern=USERNAME)
    ssh_public_key: str | None = Field(None, pattern=r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp\d+|sk-\S+) \S+( .*)?$")
    password_hash_file: str | None = Field(
        None, description="File (mode 0600) holding the crypt(3) hash of the password (mkpasswd -m sha-512). "
                          "Relative paths are from the config dir.")
    sudo: bool = True

    @model_validator(mode="before")
    @classmethod
    def _no_inline_hash(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password_hash" in data:
            raise ValueError("password_hash is a secret and is not kept in the config: write the hash into a file "
                             "readable only by you (chmod 600) and give its path as password_hash_file")
        return data


class VmCommon(Strict):
    """What vm_defaults and a VM may both set."""

    template_name: str | None = Field(None, description="The name (vm_name) of the VM template layer to clone.")
    os_type: Literal[OS_TYPES] | None = Field(None, description="Proxmox ostype; l26 for Linux.")  # type: ignore[valid-type]
    cpu_sockets: int | None = Field(None, ge=1, le=4)
    cpu_cores: int | None = Field(None, ge=1, le=512)
    memory_mb: int | None = Field(None, ge=64, le=MEMORY_MAX_MB)
    boot_disk_size_gb: int | None = Field(None, ge=1, le=65536)
    boot_disk_storage: str | None = Field(None, description="Defaults to storage.rootdir of the hypervisor config.")
    network_bridge: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$",
                                       description="Defaults to network.bridge of the hypervisor config.")
    network_model: Literal[NIC_MODELS] | None = None  # type: ignore[valid-type]
    features: list[FeatureName] | None = Field(
        None, description="Feature scripts (images/features/<name>.sh), run through the guest agent, in order.")
    docker_stacks: StackChoices | None = Field(None, description="Stacks of phoenix_stacks_config to deploy: names or "
                                                                 "{name, environment}; deployed through the Portainer "
                                                                 "agent the VM runs (it needs a static address)")
    tags: list[Annotated[str, Field(pattern=TAG)]] | None = None
    user_config: VmUserConfig | None = None
    feature_timeout_s: float | None = Field(None, gt=0, le=SCRIPT_TIMEOUT_MAX_S)
    node: NodeName | None = Field(None, description="The cluster member the VM is placed on (default: Phoenix places "
                                                    "it: see the README's Cluster section).")
    ha: HaResource | None = Field(None, description="Keep the VM under the cluster's HA manager (see the README's "
                                  "Cluster section).")

    @field_validator("features")
    @classmethod
    def _unique_features(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("a feature is listed twice")
        return v


def _alias_schema(schema: dict[str, Any]) -> None:
    """Seed 004's spellings in the schema too: vmid for vm_id, name for vm_name (one of each pair required)."""
    props = schema["properties"]
    props["vmid"] = {**props["vm_id"], "description": "Seed 004's spelling of vm_id."}
    props["name"] = {**props["vm_name"], "description": "Seed 004's spelling of vm_name."}
    schema["required"] = [r for r in schema.get("required", []) if r not in ("vm_id", "vm_name")]
    schema["allOf"] = [{"oneOf": [{"required": ["vm_id"]}, {"required": ["vmid"]}]},
                       {"oneOf": [{"required": ["vm_name"]}, {"required": ["name"]}]}]


class VmEntry(VmCommon):
    """One VM as the file gives it (before the defaults are merged)."""

    model_config = ConfigDict(json_schema_extra=_alias_schema)

    vm_id: VmId = Field(..., validation_alias=AliasChoices("vm_id", "vmid"))
    vm_name: str = Field(..., pattern=HOSTNAME, validation_alias=AliasChoices("vm_name", "name"),
                         description="Hostname, and the name Proxmox lists.")
    description: str = Field("", json_schema_extra={"maxLength": DESCRIPTION_MAX_BYTES})
    cloud_image: str | None = Field(None, description="Root layer: the key of cloud_images in the hypervisor config.")
    clone_from_vmid: VmId | None = Field(None, description="Clone this VM layer (its snapshot or template).")
    template_snapshot_name: str | None = Field(None, pattern=SNAPSHOT,
                                               description="Snapshot taken once built; children clone from it.")
    convert_to_template: bool = Field(False, description="Make a Proxmox template; children become linked clones.")
    network_config: VmNetworkConfig | None = Field(None, description="Default: DHCP on the first NIC.")

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for new, old in (("vm_id", "vmid"), ("vm_name", "name")):
                if new in data and old in data:
                    raise ValueError(f"give {new} or {old} (seed 004's spelling), not both")
        return data

    @field_validator("description")
    @classmethod
    def _fits(cls, v: str) -> str:
        if len(v.encode()) > DESCRIPTION_MAX_BYTES:
            raise ValueError(f"description is {len(v.encode())} UTF-8 bytes; at most {DESCRIPTION_MAX_BYTES} fit "
                             "next to Phoenix's layer record: shorten it")
        return v

    @model_validator(mode="after")
    def _shape(self) -> VmEntry:
        if self.template_snapshot_name and self.convert_to_template:
            raise ValueError("choose template_snapshot_name or convert_to_template: Proxmox cannot make a template "
                             "of a VM that has snapshots")
        if self.cloud_image and self.clone_from_vmid is not None:
            raise ValueError("a VM is made from cloud_image or cloned (clone_from_vmid), not both")
        return self


class Vm(Strict):
    """One VM with the defaults merged: what the rest of Phoenix reads."""

    vm_id: int
    vm_name: str
    description: str
    cloud_image: str | None
    clone_from_vmid: int | None
    template_name: str | None
    template_snapshot_name: str | None
    convert_to_template: bool
    os_type: str
    cpu_sockets: int
    cpu_cores: int
    memory_mb: int
    boot_disk_size_gb: int
    boot_disk_storage: str | None
    network_bridge: str | None
    network_model: str
    network_config: VmNetworkConfig | None
    features: list[str]
    docker_stacks: StackChoices
    tags: list[str]
    user_config: VmUserConfig | None
    feature_timeout_s: float | None
    node: str | None = None
    ha: HaResource | None = None
    index: int = 0  # its place in virtual_machines[] (for messages)

    @property
    def is_template_layer(self) -> bool:
        return bool(self.template_snapshot_name) or self.convert_to_template


class VmConfigs(Strict):
    """The file: defaults, and the VMs."""

    schema_ref: str | None = Field(None, alias="$schema")
    vm_defaults: VmCommon = Field(default_factory=VmCommon)
    virtual_machines: list[VmEntry] = Field(default_factory=list)

    def vms(self) -> dict[int, Vm]:
        """Every VM by VMID, vm_defaults merged under its own keys (a root layer inherits no template_name)."""
        defaults = {k: v for k, v in self.vm_defaults.model_dump().items() if v is not None}
        out: dict[int, Vm] = {}
        for i, entry in enumerate(self.virtual_machines):
            own = entry.model_dump(exclude_none=True)
            merged = {**BUILTIN, **defaults, **own}
            if entry.cloud_image or entry.clone_from_vmid is not None:  # a root, or a clone of a named VMID
                merged["template_name"] = None
            if "ha" not in own and (merged.get("convert_to_template") or merged.get("template_snapshot_name")):
                merged["ha"] = None  # vm_defaults' ha is for the VMs that run services, not for template layers
            merged.setdefault("network_config", None)
            for key in ("cloud_image", "clone_from_vmid", "template_snapshot_name"):
                merged.setdefault(key, None)
            out.setdefault(entry.vm_id, Vm.model_validate({**merged, "index": i}))
        return out


def parent_of(vms: dict[int, Vm], vmid: int) -> int | None:
    """The VMID a VM is cloned from: clone_from_vmid, else the VM that template_name names; None for a root."""
    vm = vms[vmid]
    if vm.cloud_image is not None:
        return None
    if vm.clone_from_vmid is not None:
        return vm.clone_from_vmid
    return next((v.vm_id for v in vms.values() if v.vm_name == vm.template_name), None)


def vm_order(vms: dict[int, Vm]) -> list[int]:
    """Every VMID, parents before children (ties by VMID; a VM in a broken chain last)."""
    done: list[int] = []
    pending = sorted(vms)
    while pending:
        ready = [v for v in pending if parent_of(vms, v) in (None, *done) or parent_of(vms, v) not in vms]
        if not ready:
            return done + pending
        done += ready
        pending = [v for v in pending if v not in ready]
    return done
