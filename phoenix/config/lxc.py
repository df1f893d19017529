"""`phoenix_lxc_configs.json`: every LXC template and container, keyed by CTID."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from .apps import FLAT_KEYS, SECTIONS, AppSettings, flat_fields, move_flat_keys
from .cluster import HaResource, NodeName
from .gateway import gateway_in_subnet
from .limits import (
    DESCRIPTION_MAX_BYTES,
    MEMORY_MAX_MB,
    PVE_DESCRIPTION_MAX,
    RECORD_BUDGET,
    SCRIPT_NAME,
    SCRIPT_TIMEOUT_MAX_S,
)
from .rules import ABSOLUTE, CTID_KEY, HOSTNAME, MAC, SNAPSHOT, TAG, USERNAME, IPv4, IPv4WithPrefix, VmId
from .stacks import StackChoices
from .strict import Strict

# Host directories a bind mount must never expose to a guest: these and everything under them...
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
                "/sbin", "/sys", "/usr", "/var/lib/pve-cluster", "/var/lib/vz")
# ... and these themselves (what lies under them may be data: /var/data, /srv/models).
SYSTEM_DIRS = ("/", "/var")


def _name_check(what: str, example: str) -> Callable[[str], str]:
    """A script is named, never given as a path: a file name inside its images/ folder (so never outside it)."""

    def check(value: str) -> str:
        if not re.fullmatch(SCRIPT_NAME, value):
            raise ValueError(
                f"{value!r} is not a {what} name: a name is letters, digits, '_', '.' and '-', starting with a "
                f"letter, digit or '_' (no '/', no '..', not a path), e.g. {example!r}"
            )
        return value

    return check


_NAME_SCHEMA = WithJsonSchema({"type": "string", "pattern": SCRIPT_NAME})
FeatureName = Annotated[str, AfterValidator(_name_check("feature", "docker")), _NAME_SCHEMA]
AppScriptName = Annotated[str, AfterValidator(_name_check("application_script", "phoenix_hypervisor_lxc_950.sh")),
                          _NAME_SCHEMA]


def _normal_path(value: object) -> object:
    """/fastData/../etc/pve -> /etc/pve, /data/ -> /data: paths are checked and stored normalised."""
    if not isinstance(value, str) or not value.startswith("/"):
        return value
    return "/" + posixpath.normpath(value).lstrip("/")


def system_dir(path: str) -> str | None:
    """The system directory a (normalised) host path is, or lies under; None for a data directory."""
    if path in SYSTEM_DIRS:
        return path
    return next((d for d in SYSTEM_TREES if path == d or path.startswith(d + "/")), None)


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
    ip: Literal["dhcp"] | IPv4WithPrefix = Field(..., description='"dhcp" or an address with prefix, 10.0.0.50/24.')
    gw: IPv4 | None = Field(None, description="Defaults to network.gateway of the hypervisor config.")
    firewall: bool = False

    _gateway_in_subnet = field_validator("gw")(gateway_in_subnet)


class PctFeatures(Strict):
    """Proxmox container feature flags. Only nesting may be set with an API token; the rest goes through SSH."""

    nesting: bool = False
    keyctl: bool = False
    fuse: bool = False
    mknod: bool = False


class MountPoint(Strict):
    """A mount point. Bind mounts of host paths keep their data across rebuilds; volumes do not."""

    container_path: Annotated[str, BeforeValidator(_normal_path)] = Field(..., pattern=ABSOLUTE)
    host_path: Annotated[str | None, BeforeValidator(_normal_path)] = Field(
        None, pattern=ABSOLUTE, description="Bind-mount this host directory (never a system directory)."
    )
    create_host_path: bool = Field(
        False, exclude=True,  # what the run does on the host before the mount, not a setting of the guest
        description="Create host_path on the node when it is missing, before the mount (default: it must exist).",
    )
    storage: str | None = Field(None, description="Allocate a new volume on this storage (scratch data).")
    size_gb: int | None = Field(None, ge=1, le=65536)
    read_only: bool = False
    persistent: bool = Field(False, description="Data must survive rebuilds: only bind mounts can promise that.")

    @field_validator("host_path")
    @classmethod
    def _not_a_system_dir(cls, v: str | None) -> str | None:
        found = system_dir(v) if v is not None else None
        if found is not None:
            where = "is" if found == v else f"lies under {found}, which is"
            raise ValueError(
                f"host_path {v} {where} a system directory of the node: a bind mount would give the guest "
                "the host's own files; bind-mount a data directory instead, e.g. /fastData/<name>"
            )
        return v

    @field_validator("container_path")
    @classmethod
    def _not_the_root(cls, v: str) -> str:
        if v == "/":
            raise ValueError("container_path / would hide the guest's root file system; mount at a directory, e.g. /data")
        return v

    @model_validator(mode="after")
    def _kind(self) -> MountPoint:
        if (self.host_path is None) == (self.storage is None):
            raise ValueError("give either host_path (a bind mount) or storage + size_gb (a volume)")
        if self.create_host_path and self.host_path is None:
            raise ValueError("create_host_path is for bind mounts: give host_path, or remove create_host_path")
        if self.storage is not None and self.size_gb is None:
            raise ValueError("a volume mount point needs size_gb")
        if self.persistent and self.host_path is None:
            raise ValueError(
                "a volume is destroyed with its container on a rebuild; for persistent data use host_path "
                "(a bind mount of a host directory)"
            )
        return self


class DockerSettings(Strict):
    """How the docker feature installs Docker, and who apps log in to Docker Hub as (the token is the docker_token
    secret file, never in the config). A clone without its own section uses its nearest ancestor's."""

    source: Literal["distro", "docker"] = Field(
        "distro", description="distro: the distribution's docker.io; docker: Docker's own repository (docker-ce).")
    login_user: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$",
        description="Docker Hub user of the docker_token secret (when that file holds only the token).")


class UserConfig(Strict):
    username: str = Field(..., pattern=USERNAME)
    ssh_public_key: str | None = None
    sudo: bool = Field(False, description="Passwordless sudo (the user logs in with a key and has no password).")


def _flat_keys_schema(schema: dict[str, Any]) -> None:
    """The flat app keys in the schema too, marked deprecated: an editor flags them instead of refusing the file."""
    for flat, (section, name) in FLAT_KEYS.items():
        field = dict(SECTIONS[section].model_json_schema()["properties"][name])
        field.update(deprecated=True, description=f"Deprecated: use app.{section}.{name}.")
        schema["properties"][flat] = field


class LxcGuest(Strict):
    """One template layer or application container."""

    model_config = ConfigDict(json_schema_extra=_flat_keys_schema)
    renamed: ClassVar[dict[str, str]] = {flat: f"app.{section}.{name}" for flat, (section, name) in FLAT_KEYS.items()}

    name: str = Field(..., pattern=HOSTNAME, description="Hostname, and the name Proxmox lists.")
    description: str = Field(
        "", json_schema_extra={"maxLength": DESCRIPTION_MAX_BYTES},
        description=f"Free text, at most {DESCRIPTION_MAX_BYTES} UTF-8 bytes (Proxmox keeps {PVE_DESCRIPTION_MAX} "
                    f"characters, {RECORD_BUDGET} of them for Phoenix's layer record).",
    )
    template: str | None = Field(None, description="OS template key (os_templates in the hypervisor config); root layers only.")
    clone_from_ctid: VmId | None = Field(None, description="Parent layer; this guest is cloned from it.")
    template_snapshot_name: str | None = Field(
        None, pattern=SNAPSHOT, description="Snapshot taken once built; children clone from it."
    )
    convert_to_template: bool = Field(False, description="Make a Proxmox template; children become linked clones.")
    memory_mb: int = Field(2048, ge=16, le=MEMORY_MAX_MB)
    swap_mb: int = Field(512, ge=0, le=MEMORY_MAX_MB)
    cores: int = Field(2, ge=1, le=512)
    storage_pool: str | None = Field(None, description="Root file system storage; defaults to storage.rootdir.")
    storage_size_gb: int = Field(16, ge=1, le=65536)
    network_config: NetworkConfig | None = None
    mac_address: str | None = Field(None, pattern=MAC)
    nameservers: list[IPv4] | None = None
    unprivileged: bool = True
    pct_features: PctFeatures = Field(default_factory=PctFeatures)
    docker: DockerSettings = Field(default_factory=DockerSettings, description="Settings of the docker feature.")
    features: list[FeatureName] = Field(
        default_factory=list, description="Feature scripts (images/features/<name>.sh), by name, in order."
    )
    application_script: AppScriptName | None = Field(
        None, description="App script: a file name under images/apps/, run after the features."
    )
    gpu_assignment: GpuList = Field(default_factory=list, description='GPU indexes, [0, 1] or "0,1".')
    mount_points: list[MountPoint] = Field(default_factory=list)
    docker_stacks: StackChoices = Field(default_factory=list, description="stacks of phoenix_stacks_config deployed "
                                        "to this guest through Portainer: a name, or {name, environment}")
    onboot: bool = False
    protection: bool = False
    tags: list[Annotated[str, Field(pattern=TAG)]] = Field(default_factory=list)
    feature_timeout_s: float | None = Field(None, gt=0, le=SCRIPT_TIMEOUT_MAX_S)
    node: NodeName | None = Field(None, description="The cluster member the guest is placed on (default: Phoenix places "
                                                    "it: see the README's Cluster section).")
    ha: HaResource | None = Field(None, description="Keep the guest under the cluster's HA manager (a guest found under "
                                  "HA without it is never rebuilt: see the README's Cluster section).")
    # base_setup
    locale: str = "en_US.UTF-8"
    extra_packages: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+$")]] = Field(default_factory=list)
    unattended_upgrades: bool = False
    user_config: UserConfig | None = None
    app: AppSettings = Field(default_factory=AppSettings, description="Settings of the app (portainer, vllm).")

    @model_validator(mode="before")
    @classmethod
    def _flat_app_keys(cls, data: Any) -> Any:
        """The first format's flat keys (vllm_model, …) are read as app.vllm.model, …"""
        return move_flat_keys(data) if isinstance(data, dict) else data

    @field_validator("description")
    @classmethod
    def _fits_proxmox(cls, v: str) -> str:
        size = len(v.encode("utf-8"))
        if size > DESCRIPTION_MAX_BYTES:
            raise ValueError(
                f"description is {size} UTF-8 bytes: Proxmox takes at most {PVE_DESCRIPTION_MAX} characters in a "
                f"guest's description and Phoenix keeps {RECORD_BUDGET} of them for its layer record, so a guest "
                f"description may have at most {DESCRIPTION_MAX_BYTES} UTF-8 bytes; shorten it"
            )
        return v

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
        if self.ha is not None and self.is_template_layer:
            raise ValueError("a layer other guests are cloned from is not a service for HA to keep running; remove ha "
                             "(its clones may have it)")
        return self

    @property
    def is_template_layer(self) -> bool:
        """A layer others are cloned from: snapshotted or converted to a Proxmox template."""
        return bool(self.template_snapshot_name) or self.convert_to_template

    def app_fields(self) -> dict[str, Any]:
        """The app settings under their flat names ("portainer_role", …, "vllm_args"): the app's identity input."""
        return flat_fields(self.app)


class LxcConfigs(Strict):
    """The file: global NVIDIA settings of the seed, and the guests keyed by CTID."""

    schema_ref: str | None = Field(None, alias="$schema")
    lxc_configs: dict[Annotated[str, Field(pattern=CTID_KEY)], LxcGuest]

    def guests(self) -> dict[int, LxcGuest]:
        return {int(k): v for k, v in self.lxc_configs.items()}
