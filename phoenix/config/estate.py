"""The whole validated estate: both config files, the script library, and the checks across them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Problem
from ..features import Library, Script
from ..secrets import SECRET_NAMES
from .files import HYPERVISOR, LXC, STACKS, SUFFIXES, VM
from .hypervisor import HypervisorConfig, OsTemplate
from .load import find, load_model
from .lxc import DockerSettings, LxcConfigs, LxcGuest
from .stacks import StacksConfig
from .vm import Vm, VmConfigs


@dataclass
class Estate:
    """Validated configuration. Loading it touches nothing outside the config and images dirs.

    `notes` are what validation found worth saying without refusing the config (deprecated keys): the
    caller shows them once per validation.
    """

    config_dir: Path
    hypervisor_file: Path
    lxc_file: Path
    hypervisor: HypervisorConfig
    guests: dict[int, LxcGuest]
    library: Library
    notes: list[Problem] = field(default_factory=list)
    stacks_file: Path | None = None       # phoenix_stacks_config (optional)
    stacks: StacksConfig = field(default_factory=StacksConfig)
    vms: dict[int, Vm] = field(default_factory=dict)   # the VMs (phoenix_vm_configs), by VMID
    vm_file: Path | None = None

    def portainer_server(self) -> int | None:
        """The guest that runs the Portainer server: portainer_api.server, else (no URL given) the guest whose
        app.portainer.role is server."""
        api = self.hypervisor.portainer_api
        if api is not None and api.server is not None:
            return api.server
        if api is not None and api.url:
            return None
        return next((c for c, g in sorted(self.guests.items()) if g.app.portainer.role == "server"), None)

    def static_ip(self, vmid: int) -> str | None:
        """A container's or VM's fixed address (None: DHCP or none)."""
        net: Any = self.vms[vmid].network_config if vmid in self.vms else self.guests[vmid].network_config
        ip = getattr(net, "ip", None)
        if ip is None or ip == "dhcp":
            return None
        return str(ip.ip) if hasattr(ip, "ip") else str(ip).split("/")[0]

    @property
    def project(self) -> Path:
        """The project's top directory (where stacks/ is): the images directory's parent."""
        return self.library.root.parent

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
        out: list[int] = []
        cur = self.guests[ctid].clone_from_ctid
        while cur is not None:
            out.append(cur)
            cur = self.guests[cur].clone_from_ctid
        return out

    def descendants(self, ctid: int) -> list[int]:
        out: list[int] = []
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

    def docker_settings(self, ctid: int) -> DockerSettings:
        """The guest's docker section, or else its nearest ancestor's that has one (the layer that installed Docker)."""
        for c in [ctid, *self.ancestors(ctid)]:
            if "docker" in self.guests[c].model_fields_set:
                return self.guests[c].docker
        return self.guests[ctid].docker

    def nvidia_installer_sha256(self, driver_version: str | None) -> str | None:
        """The configured sha256 of the driver's .run installer, when driver_version is the configured version."""
        hyp = self.hypervisor
        if not driver_version or driver_version != hyp.nvidia.driver_version:
            return None
        host = hyp.host.nvidia if hyp.host is not None else None
        return hyp.nvidia.installer_sha256 or (host.installer_sha256 if host is not None else None)

    def os_template(self, ctid: int) -> OsTemplate:
        return self.hypervisor.os_templates[self.guests[self.root(ctid)].template or ""]

    def storage(self, ctid: int) -> str:
        return self.guests[ctid].storage_pool or self.hypervisor.storage.rootdir


def load_estate(config_dir: Path, images_dir: Path) -> Estate:
    """Read and validate both files; raises ConfigError listing every problem found."""
    config_dir, images_dir = Path(config_dir), Path(images_dir)
    problems: list[Problem] = []
    files: dict[str, Path] = {}
    for stem in (HYPERVISOR, LXC):
        try:
            files[stem] = find(config_dir, stem)
        except ConfigError as e:
            problems += e.problems
    hyp = lxc = None
    notes: list[Problem] = []
    try:
        if HYPERVISOR in files:
            hyp, found = load_model(files[HYPERVISOR], HypervisorConfig)
            notes += found
    except ConfigError as e:
        problems += e.problems
    try:
        if LXC in files:
            lxc, found = load_model(files[LXC], LxcConfigs)
            notes += found
    except ConfigError as e:
        problems += e.problems
    stacks_file, stacks = None, StacksConfig()
    refused: frozenset[str] | None = frozenset()
    if any((config_dir / f"{STACKS}{s}").exists() for s in SUFFIXES):
        try:
            stacks_file = find(config_dir, STACKS)
            stacks, found = load_model(stacks_file, StacksConfig)
            notes += found
        except ConfigError as e:
            problems += e.problems
            from .stacks import readable_entries

            stacks, refused = readable_entries(stacks_file) if stacks_file is not None else (stacks, None)
    vm_file, vms = None, None
    try:
        if any((config_dir / f"{VM}{s}").exists() for s in SUFFIXES):
            vm_file = find(config_dir, VM)
            vms, found = load_model(vm_file, VmConfigs)
            notes += found
    except ConfigError as e:
        problems += e.problems
    if hyp is None or lxc is None or (vm_file is not None and vms is None):
        raise ConfigError(problems)
    estate = Estate(config_dir, files[HYPERVISOR], files[LXC], hyp, lxc.guests(), Library(images_dir), notes,
                    stacks_file, stacks, vms.vms() if vms else {}, vm_file)
    problems += cross_check(estate)
    if vms is not None:
        from .vmcheck import check_vms

        problems += check_vms(estate, vms)
        if not problems:  # the templates render from a sound config only
            from ..cloudinit.check import check_templates

            problems += check_templates(estate)
    from . import stacks as st

    sf = str(stacks_file) if stacks_file else ""
    choices = {ctid: (str(files[LXC]), _at(ctid), g.docker_stacks) for ctid, g in estate.guests.items() if g.docker_stacks}
    choices.update({vmid: (str(estate.vm_file), f"$.virtual_machines[{vm.index}]", vm.docker_stacks)
                    for vmid, vm in estate.vms.items() if vm.docker_stacks})
    problems += st.checks(stacks, sf, estate.project, config_dir, choices, refused)
    if choices and hyp.portainer_api is None and not any(g.app.portainer.role == "server" for g in estate.guests.values()):
        problems.append(Problem(str(files[HYPERVISOR]), "$.portainer_api", "guests choose docker_stacks, so Phoenix needs "
                                "a Portainer server: give portainer_api.url, or a guest with app.portainer.role "
                                "\"server\""))
    if choices:
        problems += portainer_password(estate, str(files[HYPERVISOR]), notes)
        server = estate.portainer_server()
        for vmid, (gfile, gat, _) in sorted(choices.items()):
            if vmid != server and estate.static_ip(vmid) is None:
                problems.append(Problem(gfile, f"{gat}.network_config.ip", "this guest runs stacks through a Portainer "
                                        "agent, which the server reaches at the guest's address: give it a static ip"))
    notes += st.notes(stacks, sf, st.deployed_environments(stacks, choices))
    if problems:
        raise ConfigError(problems)
    return estate


def portainer_password(estate: Estate, file: str, notes: list[Problem]) -> list[Problem]:
    """Guests choose stacks, so Phoenix needs the Portainer admin password: it makes Phoenix's API token and the key
    that signs what marks Phoenix's environments and stacks (portainer/owner.py). A 0600 file; on the simulated host
    a placeholder is made when there is none (as a script's secret would be), and said."""
    from ..errors import PhoenixError
    from ..secrets import check_private_file, ensure_placeholder_secret
    from .files import resolve

    at = "$.secrets.portainer_password_file"
    name = estate.hypervisor.secrets.portainer_password_file
    if name is None:
        return [Problem(file, at, "guests choose docker_stacks, so Phoenix needs the Portainer admin password (it makes "
                                  "Phoenix's API token and the key that signs the environments and stacks Phoenix "
                                  "deploys): set secrets.portainer_password_file in the hypervisor config to a 0600 "
                                  "file that holds it")]
    path = resolve(estate.config_dir, name)
    if estate.hypervisor.proxmox.target == "simulated" and not path.exists():
        ensure_placeholder_secret(path, "portainer_password")
        notes.append(Problem(file, at, f"created a placeholder secret {path} (mode 0600) for the simulated host"))
    try:
        check_private_file(path, "the Portainer admin password file (secrets.portainer_password_file)")
    except PhoenixError as e:
        return [Problem(file, at, str(e))]
    return []


def cross_check(estate: Estate) -> list[Problem]:
    """Checks that span guests or files: uniqueness, the clone tree, GPUs, and what scripts need."""
    return [*unique_values(estate), *clone_tree(estate), *gpus(estate), *members(estate), *scripts(estate)]


def _at(ctid: int, key: str = "") -> str:
    """The JSON path of a guest (or one of its keys) in the LXC config."""
    return f'$.lxc_configs["{ctid}"]' + (f".{key}" if key else "")


def unique_values(estate: Estate) -> list[Problem]:
    """Names, IP addresses and MACs are each used by one guest only."""
    guests, lf = estate.guests, str(estate.lxc_file)
    out: list[Problem] = []

    def dupes(values: dict[int, object], key: str, what: str) -> None:
        counts = Counter(v for v in values.values() if v is not None)
        for ctid, v in values.items():
            if v is not None and counts[v] > 1:
                others = sorted(c for c, x in values.items() if x == v and c != ctid)
                out.append(Problem(lf, _at(ctid, key), f"{what} {v} is also used by CT {', '.join(map(str, others))}"))

    dupes({c: g.name.lower() for c, g in guests.items()}, "name", "name")
    dupes({c: (g.network_config.ip.ip if g.network_config and g.network_config.ip != "dhcp" else None)
           for c, g in guests.items()}, "network_config.ip", "IP address")
    dupes({c: (g.mac_address.lower() if g.mac_address else None) for c, g in guests.items()}, "mac_address", "MAC")
    return out


def chain_end(estate: Estate, ctid: int) -> str:
    """How a guest's clone_from_ctid chain ends: "root", "cycle" (it repeats) or "undefined" (a missing CT)."""
    seen: set[int] = {ctid}
    cur = estate.guests[ctid].clone_from_ctid
    while cur is not None:
        if cur not in estate.guests:
            return "undefined"
        if cur in seen:
            return "cycle"
        seen.add(cur)
        cur = estate.guests[cur].clone_from_ctid
    return "root"


def clone_tree(estate: Estate) -> list[Problem]:
    """Roots have a known OS template; a clone's parent exists, is a template layer and fits the clone."""
    hyp, guests = estate.hypervisor, estate.guests
    lf, hf = str(estate.lxc_file), str(estate.hypervisor_file)
    out: list[Problem] = []
    for ctid, g in guests.items():
        parent = g.clone_from_ctid
        if parent is None:
            if g.template not in hyp.os_templates:
                known = ", ".join(sorted(hyp.os_templates)) or "none defined"
                out.append(Problem(lf, _at(ctid, "template"),
                                   f"OS template {g.template!r} is not in os_templates of {hf} (known: {known})"))
            continue
        if parent not in guests:
            out.append(Problem(lf, _at(ctid, "clone_from_ctid"),
                               f"CT {parent} is not defined in lxc_configs; define it or clone from another CTID"))
            continue
        if chain_end(estate, ctid) == "cycle":
            out.append(Problem(lf, _at(ctid, "clone_from_ctid"), "clone_from_ctid forms a cycle"))
        p = guests[parent]
        if not p.is_template_layer:
            out.append(Problem(lf, _at(parent), f"CT {ctid} is cloned from it, so it needs template_snapshot_name "
                                                "or convert_to_template: true"))
        if p.unprivileged != g.unprivileged:
            out.append(Problem(lf, _at(ctid, "unprivileged"),
                               f"a clone keeps its parent's unprivileged={str(p.unprivileged).lower()}"))
        if g.storage_size_gb < p.storage_size_gb:
            out.append(Problem(lf, _at(ctid, "storage_size_gb"),
                               f"a clone cannot be smaller than its parent ({p.storage_size_gb} GB)"))
    return out


def gpus(estate: Estate) -> list[Problem]:
    """Every GPU a guest is given is one of its node's: of the node it names, else of some member (it is placed on one
    that has them all); with one node, of nvidia.gpus."""
    hyp, lf, hf = estate.hypervisor, str(estate.lxc_file), str(estate.hypervisor_file)
    members = hyp.proxmox.nodes
    out: list[Problem] = []
    for ctid, g in estate.guests.items():
        if not g.gpu_assignment:
            continue
        if members is None:
            have = hyp.nvidia.gpus
            out += [Problem(lf, _at(ctid, f"gpu_assignment[{i}]"), f"GPU {gpu} is not among nvidia.gpus {have} of {hf}")
                    for i, gpu in enumerate(g.gpu_assignment) if gpu not in have]
            continue
        wanted = set(g.gpu_assignment)
        if g.node is not None:
            have = hyp.gpus_of(g.node)
            out += [Problem(lf, _at(ctid, f"gpu_assignment[{i}]"), f"GPU {gpu} is not among the GPUs {have} of node "
                                                                   f"{g.node} (proxmox.nodes in {hf})")
                    for i, gpu in enumerate(g.gpu_assignment) if gpu not in have]
        elif not any(wanted <= set(n.gpus) for n in members):
            listed = "; ".join(f"{n.name}: {n.gpus}" for n in members)
            out.append(Problem(lf, _at(ctid, "gpu_assignment"), f"no node of proxmox.nodes in {hf} has GPUs "
                                                                f"{sorted(wanted)} ({listed})"))
    return out


def members(estate: Estate) -> list[Problem]:
    """A guest's node is a member of proxmox.nodes (when the cluster is declared; else it is checked against the
    cluster when a run reads it)."""
    declared = estate.hypervisor.proxmox.nodes
    if declared is None:
        return []
    names = [n.name for n in declared]
    known = ", ".join(names)
    out = [Problem(str(estate.lxc_file), _at(ctid, "node"), f"node {g.node!r} is not one of proxmox.nodes ({known}) "
                                                           f"of {estate.hypervisor_file}")
           for ctid, g in estate.guests.items() if g.node is not None and g.node not in names]
    out += [Problem(str(estate.vm_file), f"$.virtual_machines[{vm.index}].node", f"node {vm.node!r} is not one of "
                                                                              f"proxmox.nodes ({known}) of "
                                                                              f"{estate.hypervisor_file}")
            for vm in estate.vms.values() if vm.node is not None and vm.node not in names]
    return out


def outside(root: Path, path: Path) -> Path | None:
    """Where a script file really is (links followed) when that is outside root (resolved), else None."""
    real = path.resolve()
    return None if real.is_relative_to(root) else real


def scripts(estate: Estate) -> list[Problem]:
    """Feature and app scripts exist inside images/, and the guest gives them what their headers need."""
    guests, lib, lf = estate.guests, estate.library, str(estate.lxc_file)
    root, escapes = lib.root.resolve(), {}
    out: list[Problem] = []
    for ctid, g in guests.items():
        end = chain_end(estate, ctid)
        if end == "cycle":  # reported by clone_tree
            continue
        chain = estate.inherited_features(ctid) if end == "root" else list(g.features)
        named = [(f"features[{i}]", name, lib.feature_path(name)) for i, name in enumerate(g.features)]
        if g.application_script:
            named.append(("application_script", g.application_script, lib.app_path(g.application_script)))
        for key, name, path in named:
            if path not in escapes:  # guests share scripts: each file is resolved once
                escapes[path] = outside(root, path)
            real = escapes[path]
            if real is not None:
                out.append(Problem(lf, _at(ctid, key), f"{path} leads to {real}, outside {lib.root}: a script must "
                                                       "be a file inside the images directory"))
            elif not lib.exists(path):
                said = lib.missing_app(name) if key == "application_script" else lib.missing_feature(name)
                out.append(Problem(lf, _at(ctid, key), said))
            else:
                script = lib.app(name) if key == "application_script" else lib.feature(name)
                out += _needs(estate, ctid, key, script, chain)
        if g.app.vllm.model is None and "vllm" in chain and g.application_script:
            out.append(Problem(lf, _at(ctid, "app.vllm.model"), "an app serving vLLM needs app.vllm.model"))
    return out


def _needs(estate: Estate, ctid: int, key: str, script: Script, chain: list[str]) -> list[Problem]:
    """What a script's header declares it needs, against the guest, its features and the secrets configured."""
    guest, file, path, name = estate.guests[ctid], str(estate.lxc_file), _at(ctid, key), script.name
    out = [Problem(str(script.path), "header", problem) for problem in script.problems]
    if "nesting" in script.requires and not guest.pct_features.nesting:
        out.append(Problem(file, path, f"{name} needs nesting: set pct_features.nesting to true on this guest"))
    if "keyctl" in script.requires and guest.unprivileged and not guest.pct_features.keyctl:
        out.append(Problem(file, path, f"{name} needs keyctl in an unprivileged container: set pct_features.keyctl "
                                       "to true on this guest"))
    if "gpu" in script.requires and not guest.gpu_assignment:
        out.append(Problem(file, path, f"{name} needs GPUs: set gpu_assignment (e.g. [0, 1])"))
    for feat in script.requires_features:
        if feat not in chain or (name in chain and chain.index(feat) > chain.index(name)):
            out.append(Problem(file, path, f"{name} needs the {feat} feature first, on this guest or a parent"))
    for secret in script.secrets:
        if secret in SECRET_NAMES and estate.hypervisor.secrets.file(secret) is None:
            out.append(Problem(file, path, f"{name} needs the secret {secret}: set secrets.{secret}_file "
                                           "in the hypervisor config"))
    return out
