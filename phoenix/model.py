"""The run's model of the estate: its resources and the API endpoint, reused from .cache/model.json while no
input byte has changed.

A run with nothing to do needs only this (no config models, no pydantic). The cache is JSON: it can carry
no code, and one that is damaged or from another Phoenix is said once and rebuilt from the config.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cachefiles import write_whole
from .config.files import HYPERVISOR, LXC, STACKS, SUFFIXES, VM, resolve
from .pve.endpoint import Endpoint
from .resources import Resource

if TYPE_CHECKING:
    from .config.estate import Estate

FORMAT = 10  # bump when what .cache/model.json holds changes
CACHE_FILE = "model.json"
OLD_CACHES = ("estate.pickle",)  # earlier Phoenix kept a pickle: never read, removed


def model_key(config_dir: Path, images_dir: Path) -> str:
    """Digest of everything the model is made from: config files, scripts, stacks and Phoenix's own model code.

    Secret files of the hypervisor config are not in it: they are read when a script needs them. A stack variable's
    value_file is (its value is part of the stack's identity, as a keyed digest), and so is the Portainer admin
    password file (it makes that key): the model lists those files (`extra`), each with a digest keyed the same way,
    so .cache/ holds no digest of a secret that anyone could test a guess against."""
    h = hashlib.sha256(f"{FORMAT}|{config_dir.resolve()}|{images_dir.resolve()}".encode())
    package = Path(__file__).parent
    configs = [config_dir / f"{stem}{suffix}" for stem in (HYPERVISOR, LXC, STACKS, VM) for suffix in SUFFIXES]
    code = [*package.glob("config/*.py"), *package.glob("kinds/**/*.py"), package / "resources.py", package / "features.py",
            *package.glob("cloudinit/*.py"), package / "portainer" / "owner.py"]
    stacks = images_dir.parent / "stacks"
    cloudinit = images_dir.parent / "cloudinit"  # VM identities hold their rendered cloud-init files
    templates = sorted(p for p in cloudinit.rglob("*") if p.is_file()) if cloudinit.is_dir() else []
    sources = [*(p for p in configs if p.exists()), *sorted(p for p in images_dir.rglob("*") if p.is_file()),
               *sorted(p for p in stacks.rglob("*") if p.is_file()), *templates, *sorted(code)]
    for path in sources:
        try:
            data = path.read_bytes()
        except OSError as e:  # a directory, no permission: the cache misses, and validation says what is wrong
            data = f"unreadable: {e.strerror}".encode()
        h.update(str(path).encode() + b"\0" + data + b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class Model:
    key: str
    resources: dict[str, Resource]   # every resource of every kind, parents first
    endpoint: Endpoint               # the API as the config names it
    extra: dict[str, str] = field(default_factory=dict)  # more input files (stack value files): path -> keyed digest
    artifacts: str | None = None     # the artifact store's directory as the config names it (resolved)
    members: list[str] | None = None  # proxmox.nodes by name (None: the cluster's members are read from the API)
    gpus: dict[str, list[int]] = field(default_factory=dict)  # the GPU indexes of each node the config knows
    key_file: str | None = None      # the Portainer admin password file, whose key digests `extra` (portainer/owner.py)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "key": self.key, "endpoint": self.endpoint.to_json(), "extra": self.extra,
                "resources": [r.to_json() for r in self.resources.values()], "artifacts": self.artifacts,
                "members": self.members, "gpus": self.gpus, "key_file": self.key_file}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Model:
        resources = [Resource.from_json(r) for r in data["resources"]]
        return cls(data["key"], {r.key: r for r in resources}, Endpoint.from_json(data["endpoint"]), dict(data["extra"]),
                   data.get("artifacts"), data.get("members"), dict(data.get("gpus") or {}), data.get("key_file"))

    def current(self) -> bool:
        """Whether the extra input files still hold what the model was made from (a password file that cannot be
        read: not current, and validating the config says why)."""
        if not self.extra:
            return True
        from .errors import PhoenixError
        from .portainer.owner import file_digest, key_of

        try:
            key = key_of(self.key_file)
        except PhoenixError:
            return False
        return all(file_digest(key, p) == digest for p, digest in self.extra.items())


def of_estate(estate: Estate, key: str) -> Model:
    from .kinds import KINDS

    resources: dict[str, Resource] = {}
    for kind in KINDS.values():
        resources.update(kind.resources(estate))
    server = resources.get("portainer:server")
    key_file = server.settings["target"]["password_file"] if server is not None else None
    extra: dict[str, str] = {}
    if key_file is not None:  # no guest chooses a stack: no stack's identity holds a value file's value
        from .portainer.owner import file_digest, key_of

        owner = key_of(key_file)
        files = sorted({str(resolve(estate.config_dir, v.value_file)) for stack in estate.stacks.docker_stacks.values()
                        for env in stack.environments.values() for v in env.variables if v.value_file})
        extra = {f: file_digest(owner, f) for f in [*files, key_file]}
    hyp = estate.hypervisor
    store = hyp.artifacts.dir
    members = [n.name for n in hyp.proxmox.nodes] if hyp.proxmox.nodes is not None else None
    gpus = {n: hyp.gpus_of(n) for n in (members or [hyp.proxmox.node])}
    return Model(key, resources, Endpoint.of(hyp, estate.config_dir), extra,
                 str(resolve(estate.config_dir, store)) if store else None, members, gpus, key_file)


def load(config_dir: Path, images_dir: Path, cache: Path, say: Callable[[str], None]) -> tuple[Model, Estate | None]:
    """The model, from the cache when its key matches (then no estate), else validated now (ConfigError if bad)."""
    key = model_key(config_dir, images_dir)
    path = cache / CACHE_FILE
    for old in OLD_CACHES:
        (cache / old).unlink(missing_ok=True)
    try:
        data = json.loads(path.read_bytes())
        if isinstance(data, dict) and data.get("format") == FORMAT and data.get("key") == key:
            cached = Model.from_json(data)
            if cached.current():
                return cached, None
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as e:
        say(f"phoenix: {path} was damaged ({type(e).__name__}: {e}); rebuilding it from the config")
    from .config.estate import load_estate

    estate = load_estate(config_dir, images_dir)
    model = of_estate(estate, key)
    try:  # a cache: a run without one is only slower
        write_whole(path, json.dumps(model.to_json(), separators=(",", ":")).encode())
    except OSError as e:
        say(f"phoenix: could not write {path}: {e.strerror}")
    return model, estate
