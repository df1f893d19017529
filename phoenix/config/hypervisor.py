"""`phoenix_hypervisor_config.json`: the Proxmox endpoint, node, storage, network and global defaults."""

from __future__ import annotations

import ipaddress
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ..secrets import SECRET_NAMES
from .cluster import ClusterNode, NodeName, check_members
from .host import HostConfig
from .limits import HTTP_TIMEOUT_MAX_S, SCRIPT_TIMEOUT_MAX_S, SSH_CONNECT_TIMEOUT_MAX_S, TASK_TIMEOUT_MAX_S
from .strict import Strict


class ProxmoxConfig(Strict):
    """How Phoenix reaches the Proxmox API (the `proxmox` section; a run's API is pve.endpoint.Endpoint)."""

    target: Literal["simulated", "remote"] = Field(
        "simulated",
        description="'simulated' starts the embedded fakepve host under .cache/sim; 'remote' uses api_url.",
    )
    api_url: str | None = Field(None, description="https://host:8006 of the node (remote only).")
    node: NodeName = Field("pve1", description="The Proxmox node api_url reaches (one node: the node the guests live "
                                             "on). With proxmox.nodes, the first member unless given.")
    nodes: list[ClusterNode] | None = Field(
        None, description="The members of the cluster Phoenix may place guests on, with how to reach each. Without it "
                          "the members are read from the API (one node: a cluster of one).")
    token_id: str = Field(
        "root@pam!phoenix", pattern=r"^[^@!\s]+@[^@!\s]+![A-Za-z][A-Za-z0-9._-]*$",
        description="API token id, user@realm!name.",
    )
    token_file: str | None = Field(
        None, description="File holding the token secret (mode 0600). Relative paths are from the config dir."
    )
    verify_tls: bool = Field(True, description="Verify the API certificate. Never turn off outside a lab.")
    ca_file: str | None = Field(None, description="PEM CA bundle for the node's certificate (e.g. pve-root-ca.pem).")
    fingerprint: str | None = Field(
        None, pattern=r"^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$",
        description="SHA-256 fingerprint of the node certificate, instead of a CA file.",
    )
    timeout_s: float = Field(30, gt=0, le=HTTP_TIMEOUT_MAX_S, description="Timeout of one HTTP request.")
    task_timeout_s: float = Field(1800, gt=0, le=TASK_TIMEOUT_MAX_S, description="Longest wait for one Proxmox task (UPID).")

    @model_validator(mode="after")
    def _members(self) -> ProxmoxConfig:
        if self.nodes is not None:
            if not self.nodes:
                raise ValueError("proxmox.nodes is empty: list the members, or leave it out to read them from the API")
            problems = check_members(self.nodes)
            if problems:
                raise ValueError("; ".join(problems))
            names = [n.name for n in self.nodes]
            if "node" not in self.model_fields_set:
                self.node = names[0]
            elif self.node not in names:
                raise ValueError(f"proxmox.node {self.node!r} is not one of proxmox.nodes ({', '.join(names)})")
        return self

    def member(self, name: str) -> ClusterNode | None:
        """The declared member of that name (None: not declared, or no proxmox.nodes)."""
        return next((n for n in self.nodes or () if n.name == name), None)

    @model_validator(mode="after")
    def _remote_needs_url(self) -> ProxmoxConfig:
        if self.target == "remote":
            if not self.api_url or not self.api_url.startswith("https://"):
                raise ValueError("a remote target needs api_url, e.g. https://pve.example.lan:8006")
            if not self.token_file:
                raise ValueError("a remote target needs token_file (the API token secret, mode 0600)")
        return self


class SshConfig(Strict):
    """SSH to the node: used for `pct exec/push` and the settings only root@pam may make (`pct set`)."""

    host: str | None = Field(None, description="Defaults to the host of proxmox.api_url.")
    port: int = Field(22, ge=1, le=65535)
    user: str = "root"
    key_file: str | None = Field(None, description="Private key; the SSH agent is tried too.")
    use_agent: bool = True
    known_hosts: str = Field("~/.ssh/known_hosts", description="Host keys are verified against this file.")
    host_key_fingerprint: str | None = Field(
        None, pattern=r"^SHA256:[A-Za-z0-9+/]{43}=?$",
        description="Pin the node's host key (as `ssh-keygen -lf` prints it) instead of known_hosts.",
    )
    connect_timeout_s: float = Field(15, gt=0, le=SSH_CONNECT_TIMEOUT_MAX_S)


class StorageDefaults(Strict):
    retired: ClassVar[dict[str, str]] = {
        "templates": "deprecated and unused: each OS template's volume names its storage "
                     "(local:vztmpl/...); remove storage.templates",
    }

    rootdir: str = Field("local-lvm", description="Default storage for container root file systems (and VM disks).")
    snippets: str = Field("local", description="Storage with `snippets` content: VMs' cloud-init files go there.")
    templates: str | None = Field(
        None, json_schema_extra={"deprecated": True},
        description="Deprecated and unused: each OS template's volume names its storage.",
    )


class NetworkDefaults(Strict):
    bridge: str = Field("vmbr0", pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")
    gateway: ipaddress.IPv4Address | None = None
    nameservers: list[ipaddress.IPv4Address] = Field(default_factory=list)
    searchdomain: str | None = None


class OsTemplate(Strict):
    """An OS template: where it lives in template storage, and where to fetch it from when missing."""

    volume: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+:vztmpl/[^/\s]+$",
                        description="storage:vztmpl/file, e.g. local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst")
    url: str | None = Field(None, description="Downloaded into storage through the API when the volume is missing.")
    checksum: str | None = None
    checksum_algorithm: Literal["md5", "sha1", "sha224", "sha256", "sha384", "sha512"] | None = None

    @model_validator(mode="after")
    def _checksum_pair(self) -> OsTemplate:
        if bool(self.checksum) != bool(self.checksum_algorithm):
            raise ValueError("give checksum and checksum_algorithm together")
        return self


class CloudImage(Strict):
    """A cloud image VMs are made from: its volume in a storage with `import` content, and where to fetch it."""

    volume: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+:import/[^/\s]+\.(qcow2|raw|vmdk|img)$",
                        description="storage:import/file, e.g. local:import/noble-server-cloudimg-amd64.qcow2")
    url: str | None = Field(None, description="Downloaded into the storage through the API (download-url, "
                                              "content=import; PVE 8.4+) when the volume is missing.")
    checksum: str | None = None
    checksum_algorithm: Literal["md5", "sha1", "sha224", "sha256", "sha384", "sha512"] | None = None

    @model_validator(mode="after")
    def _checksum_pair(self) -> CloudImage:
        if bool(self.checksum) != bool(self.checksum_algorithm):
            raise ValueError("give checksum and checksum_algorithm together")
        return self


class NvidiaConfig(Strict):
    driver_version: str | None = Field(
        None, pattern=r"^\d+\.\d+(\.\d+)?$",
        description="Host driver version; the nvidia feature installs the matching userland.",
    )
    gpus: list[int] = Field(default_factory=list, description="GPU indexes present on the node (/dev/nvidiaN).")
    installer_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$",
        description="sha256 of NVIDIA-Linux-x86_64-<driver_version>.run: the guests' nvidia feature checks the installer "
                    "against it (when the node runs driver_version; host.nvidia.installer_sha256 is used when unset).",
    )

    @field_validator("gpus")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v) or any(i < 0 for i in v):
            raise ValueError("GPU indexes must be unique, non-negative integers")
        return v


class SecretFiles(Strict):
    """Token files (mode 0600), one `<name>_file` per name of secrets.SECRET_NAMES (a test keeps them equal).

    Their content is delivered into guests as 0600 files, never on a command line.
    """

    hf_token_file: str | None = Field(None, description="Hugging Face token (secret hf_token).")
    docker_token_file: str | None = Field(None, description="Docker Hub token (secret docker_token).")
    portainer_password_file: str | None = Field(
        None, description="Portainer admin password (secret portainer_password)."
    )
    vllm_api_key_file: str | None = Field(
        None, description="The key clients give vLLM's OpenAI API (secret vllm_api_key; 16+ characters of A-Za-z0-9_.~+/=-)."
    )

    def file(self, name: str) -> str | None:
        """The configured file of secret `name` (one of SECRET_NAMES), None when not configured."""
        if name not in SECRET_NAMES:
            raise KeyError(f"unknown secret {name!r} (known: {', '.join(SECRET_NAMES)})")
        value: str | None = getattr(self, f"{name}_file")
        return value


class PortainerApi(Strict):
    """The Portainer server the stacks are deployed through (seed 002's portainer_api)."""

    url: str | None = Field(None, pattern=r"^https://[^/\s]+(:\d+)?/?$",
                            description="https://host:9443; defaults to the server guest's address and app.portainer.port")
    server: int | None = Field(None, ge=100, description="the guest that runs the server; defaults to the guest whose "
                                                        "app.portainer.role is server")
    admin_user: str = "admin"
    token_file: str = Field("phoenix_portainer_token.conf",
                            description="the API token (X-API-Key), 0600; Phoenix makes it from the admin password the "
                                        "first time (secrets.portainer_password_file)")
    verify_tls: bool = True
    ca_file: str | None = None
    fingerprint: str | None = Field(None, pattern=r"^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$",
                                    description="the server certificate's SHA-256 (Portainer's own is self-signed)")
    timeout_s: float = Field(30, gt=0, le=600)
    agent_port: int = Field(9001, ge=1, le=65535)


class Behavior(Strict):
    feature_timeout_s: float = Field(
        3600, gt=0, le=SCRIPT_TIMEOUT_MAX_S, description="Default timeout of one feature or app script."
    )
    stop_templates_after_build: bool = Field(True, description="Template layers are stopped once snapshotted.")
    api_retries: int = Field(4, ge=0, le=10, description="Retries of idempotent calls on lock/network errors.")


class ArtifactsConfig(Strict):
    """Layer archives kept outside the host (issue 15): `doit export` writes them, a run restores a layer from one."""

    dir: str | None = Field(None, description="The artifact store: a directory (local or a mounted share). "
                                              "PHOENIX_ARTIFACTS overrides it.")
    backup_storage: str = Field("local", description="The node's storage for vzdump archives (content 'backup').")
    node_dump_dir: str = Field("/var/lib/vz/dump", pattern=r"^/", description="Where that storage keeps its "
                               "archives on the node (<storage path>/dump): archives are copied there over SSH.")


class HypervisorConfig(Strict):
    """Global settings for the estate."""

    schema_ref: str | None = Field(None, alias="$schema")
    version: str = "1.0"
    proxmox: ProxmoxConfig = Field(default_factory=ProxmoxConfig)
    ssh: SshConfig = Field(default_factory=SshConfig)
    storage: StorageDefaults = Field(default_factory=StorageDefaults)
    network: NetworkDefaults = Field(default_factory=NetworkDefaults)
    os_templates: dict[str, OsTemplate] = Field(default_factory=dict)
    cloud_images: dict[str, CloudImage] = Field(default_factory=dict, description="Cloud images VM root layers "
                                                                                "are made from, by key.")
    nvidia: NvidiaConfig = Field(default_factory=NvidiaConfig)
    secrets: SecretFiles = Field(default_factory=SecretFiles)
    behavior: Behavior = Field(default_factory=Behavior)
    timezone: str = "Etc/UTC"
    host: HostConfig | None = Field(None, description="What the node itself must have: the host:* tasks "
                                                       "(phoenix setup-hypervisor).")
    portainer_api: PortainerApi | None = Field(None, description="The Portainer server stacks are deployed through.")
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)

    @model_validator(mode="after")
    def _gpus_per_node(self) -> HypervisorConfig:
        if self.proxmox.nodes is not None and self.nvidia.gpus:
            raise ValueError("with proxmox.nodes, each node lists its own GPUs: move nvidia.gpus to "
                             f"proxmox.nodes[].gpus of the node that has them ({self.proxmox.node}?)")
        return self

    def gpus_of(self, node: str) -> list[int]:
        """The GPU indexes a node has: its proxmox.nodes entry's, else (one node) nvidia.gpus for proxmox.node."""
        member = self.proxmox.member(node)
        if member is not None:
            return list(member.gpus)
        return list(self.nvidia.gpus) if node == self.proxmox.node and self.proxmox.nodes is None else []

    @model_validator(mode="after")
    def _host_nvidia_needs_a_version(self) -> HypervisorConfig:
        if self.host is not None and self.host.nvidia is not None and not self.nvidia.driver_version:
            raise ValueError("host.nvidia installs nvidia.driver_version on the node: set it (e.g. \"580.76.05\")")
        return self
