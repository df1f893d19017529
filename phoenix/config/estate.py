"""The whole validated estate: both config files, the script library, and the checks across them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, Problem
from ..features import Library
from .files import HYPERVISOR, LXC, resolve
from .hypervisor import HypervisorConfig
from .load import find, load_model
from .lxc import LxcConfigs, LxcGuest


@dataclass
class Estate:
    """Validated configuration. Loading it touches nothing outside the config and images dirs."""

    config_dir: Path
    hypervisor_file: Path
    lxc_file: Path
    hypervisor: HypervisorConfig
    guests: dict[int, LxcGuest]
    library: Library

    def resolve(self, path: str) -> Path:
        """A path from the config: ~ expanded, relative to the config dir."""
        return resolve(self.config_dir, path)

    def parent(self, ctid: int) -> int | None:
        return self.guests[ctid].clone_from_ctid

    def children(self, ctid: int) -> list[int]:
        if "_children" not in self.__dict__:
            index: dict[int, list[int]] = {}
            for c in sorted(self.guests):
                parent = self.guests[c].clone_from_ctid
                if parent is not None:
                    index.setdefault(parent, []).append(c)
            self.__dict__["_children"] = index
        return list(self.__dict__["_children"].get(ctid, []))

    def ancestors(self, ctid: int) -> list[int]:
        """Parents from the nearest up to the root."""
        out, cur = [], self.guests[ctid].clone_from_ctid
        while cur is not None:
            out.append(cur)
            cur = self.guests[cur].clone_from_ctid
        return out

    def descendants(self, ctid: int) -> list[int]:
        out = []
        for child in self.children(ctid):
            out += [child, *self.descendants(child)]
        return out

    def root(self, ctid: int) -> int:
        chain = self.ancestors(ctid)
        return chain[-1] if chain else ctid

    def order(self) -> list[int]:
        """Every CTID, parents before children (ties by CTID)."""
        done: list[int] = []
        pending = sorted(self.guests)
        while pending:
            ready = [c for c in pending if self.guests[c].clone_from_ctid in (None, *done)]
            done += ready
            pending = [c for c in pending if c not in ready]
        return done

    def inherited_features(self, ctid: int) -> list[str]:
        """Features run on this guest and on its ancestors, root first."""
        out: list[str] = []
        for c in [*reversed(self.ancestors(ctid)), ctid]:
            out += [f for f in self.guests[c].features if f not in out]
        return out

    def os_template(self, ctid: int):
        return self.hypervisor.os_templates[self.guests[self.root(ctid)].template or ""]

    def storage(self, ctid: int) -> str:
        return self.guests[ctid].storage_pool or self.hypervisor.storage.rootdir


def load_estate(config_dir: Path, images_dir: Path) -> Estate:
    """Read and validate both files; raises ConfigError listing every problem found."""
    config_dir, images_dir = Path(config_dir), Path(images_dir)
    problems: list[Problem] = []
    hyp_file, lxc_file = find(config_dir, HYPERVISOR), find(config_dir, LXC)
    hyp = lxc = None
    for path, model in ((hyp_file, HypervisorConfig), (lxc_file, LxcConfigs)):
        try:
            loaded = load_model(path, model)
        except ConfigError as e:
            problems += e.problems
            continue
        if model is HypervisorConfig:
            hyp = loaded
        else:
            lxc = loaded
    if hyp is None or lxc is None:
        raise ConfigError(problems)
    estate = Estate(config_dir, hyp_file, lxc_file, hyp, lxc.guests(), Library(images_dir))
    problems += cross_check(estate)
    if problems:
        raise ConfigError(problems)
    return estate


def cross_check(estate: Estate) -> list[Problem]:
    """Checks that span guests or files: references, cycles, uniqueness, feature needs."""
    hyp, guests, lib = estate.hypervisor, estate.guests, estate.library
    lf, hf = str(estate.lxc_file), str(estate.hypervisor_file)
    out: list[Problem] = []

    def at(ctid: int, key: str = "") -> str:
        return f'$.lxc_configs["{ctid}"]' + (f".{key}" if key else "")

    def dupes(values: dict[int, object], key: str, what: str) -> None:
        counts = Counter(v for v in values.values() if v is not None)
        for ctid, v in values.items():
            if v is not None and counts[v] > 1:
                others = sorted(c for c, x in values.items() if x == v and c != ctid)
                out.append(Problem(lf, at(ctid, key), f"{what} {v} is also used by CT {', '.join(map(str, others))}"))

    dupes({c: g.name.lower() for c, g in guests.items()}, "name", "name")
    dupes({c: (g.network_config.ip.ip if g.network_config and g.network_config.ip != "dhcp" else None)
           for c, g in guests.items()}, "network_config.ip", "IP address")
    dupes({c: (g.mac_address.lower() if g.mac_address else None) for c, g in guests.items()}, "mac_address", "MAC")

    cyclic: set[int] = set()
    for ctid, g in guests.items():
        parent = g.clone_from_ctid
        if parent is None:
            if g.template not in hyp.os_templates:
                known = ", ".join(sorted(hyp.os_templates)) or "none defined"
                out.append(Problem(lf, at(ctid, "template"),
                                   f"OS template {g.template!r} is not in os_templates of {hf} (known: {known})"))
            continue
        if parent not in guests:
            out.append(Problem(lf, at(ctid, "clone_from_ctid"),
                               f"CT {parent} is not defined in lxc_configs; define it or clone from another CTID"))
            continue
        seen, cur = {ctid}, parent
        while cur is not None and cur in guests:
            if cur in seen:
                cyclic.add(ctid)
                out.append(Problem(lf, at(ctid, "clone_from_ctid"), "clone_from_ctid forms a cycle"))
                break
            seen.add(cur)
            cur = guests[cur].clone_from_ctid
        p = guests[parent]
        if not p.is_template_layer:
            out.append(Problem(lf, at(parent), f"CT {ctid} is cloned from it, so it needs template_snapshot_name "
                                               "or convert_to_template: true"))
        if p.unprivileged != g.unprivileged:
            out.append(Problem(lf, at(ctid, "unprivileged"),
                               f"a clone keeps its parent's unprivileged={str(p.unprivileged).lower()}"))
        if g.storage_size_gb < p.storage_size_gb:
            out.append(Problem(lf, at(ctid, "storage_size_gb"),
                               f"a clone cannot be smaller than its parent ({p.storage_size_gb} GB)"))

    for ctid, g in guests.items():
        for i, gpu in enumerate(g.gpu_assignment):
            if gpu not in hyp.nvidia.gpus:
                out.append(Problem(lf, at(ctid, f"gpu_assignment[{i}]"),
                                   f"GPU {gpu} is not among nvidia.gpus {hyp.nvidia.gpus} of {hf}"))
        if ctid in cyclic:
            continue
        chain = estate.inherited_features(ctid) if g.clone_from_ctid in guests or g.clone_from_ctid is None \
            else list(g.features)
        for i, name in enumerate(g.features):
            if not lib.exists(lib.feature_path(name)):
                known = ", ".join(lib.known_features())
                out.append(Problem(lf, at(ctid, f"features[{i}]"), f"unknown feature {name!r} (known: {known})"))
                continue
            script = lib.feature(name)
            out += _needs(lf, at(ctid, f"features[{i}]"), name, script, g, chain, hyp)
        if g.application_script:
            if not lib.exists(lib.app_path(g.application_script)):
                out.append(Problem(lf, at(ctid, "application_script"),
                                   f"{lib.app_path(g.application_script)} does not exist"))
            else:
                script = lib.app(g.application_script)
                out += _needs(lf, at(ctid, "application_script"), g.application_script, script, g, chain, hyp)
        if g.vllm_model is None and "vllm" in chain and g.application_script:
            out.append(Problem(lf, at(ctid, "vllm_model"), "an app serving vLLM needs vllm_model"))
    return out


def _needs(file: str, path: str, name: str, script, guest: LxcGuest, chain: list[str], hyp) -> list[Problem]:
    out = []
    for problem in script.problems:
        out.append(Problem(str(script.path), "header", problem))
    if "nesting" in script.requires and not guest.pct_features.nesting:
        out.append(Problem(file, path, f"{name} needs nesting: set pct_features.nesting to true on this guest"))
    if "gpu" in script.requires and not guest.gpu_assignment:
        out.append(Problem(file, path, f"{name} needs GPUs: set gpu_assignment (e.g. [0, 1])"))
    for feat in script.requires_features:
        if feat not in chain or (name in chain and chain.index(feat) > chain.index(name)):
            out.append(Problem(file, path, f"{name} needs the {feat} feature first, on this guest or a parent"))
    for secret in script.secrets:
        if getattr(hyp.secrets, f"{secret}_file") is None:
            out.append(Problem(file, path, f"{name} needs the secret {secret}: set secrets.{secret}_file "
                                           "in the hypervisor config"))
    return out
