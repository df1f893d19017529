"""Baking and updating one layer on Proxmox: the calls, in order, through Pve and the node transport."""

from __future__ import annotations

import hashlib
import os
import secrets as _random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import params as P
from .context import build_context
from .errors import PhoenixError, ScriptFailed, UnsafeOperation
from .facts import guests as F
from .layers import Layer
from .plan import GIB, MIB, Decision
from .transport.base import ScriptRun

if TYPE_CHECKING:
    from .runtime import Run

ALLOW_PROTECTED = "PHOENIX_DESTROY_PROTECTED"


def protected_allowed(ctid: int) -> bool:
    """The explicit flag: PHOENIX_DESTROY_PROTECTED=950,920 (or 'all')."""
    value = os.environ.get(ALLOW_PROTECTED, "")
    names = {v.strip().removeprefix("ct") for v in value.split(",") if v.strip()}
    return "all" in names or str(ctid) in names


class Steps:
    """Prints what a layer does, with elapsed time: `ct950  clone from ct920@vllm-base-snapshot  0.41s`."""

    def __init__(self, layer: Layer, say: Callable[[str], None]):
        self.layer, self.say = layer, say

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        except BaseException:
            self.say(f"{self.layer.task:<6} {what}  FAILED after {time.monotonic() - t0:.2f}s")
            raise
        self.say(f"{self.layer.task:<6} {what}  {time.monotonic() - t0:.2f}s")


class Builder:
    """Bakes, rebuilds and updates layers of one run."""

    def __init__(self, run: Run):
        self.run = run
        self.pve = run.pve
        self.node = run.pve.node
        self.estate = run.estate

    def lxc(self, ctid: int, suffix: str = "") -> str:
        return f"nodes/{self.node}/lxc/{ctid}{suffix}"

    # ------------------------------------------------------------ destroy

    def check_destroyable(self, ctids: list[int]) -> dict[int, dict[str, Any]]:
        """Refuse before touching anything if any of these existing guests is protected or foreign.

        Returns the configs read, by CTID, for destroy()."""
        configs = {}
        for ctid in ctids:
            facts = self.run.view.get(ctid)
            if facts is None:
                continue
            if not facts.managed:
                raise UnsafeOperation(f"CT {ctid} is not managed by Phoenix (no 'phoenix' tag): refusing to destroy it")
            config = configs[ctid] = self.pve.get(self.lxc(ctid, "/config"))
            if config.get("protection") and not protected_allowed(ctid):
                raise UnsafeOperation(
                    f"CT {ctid} has protection set, and rebuilding it would destroy it. Nothing was changed. "
                    f"To allow it for this run: {ALLOW_PROTECTED}={ctid} doit ...; or clear the flag: "
                    f"pct set {ctid} --protection 0 (and remove protection from its config). Data on "
                    f"host_path mount points survives a rebuild; data inside the container does not.")
        return configs

    def explain_lock(self, ctid: int, lock: str) -> None:
        """A locked guest is never forced: say whether a task still holds it or a dead one left it."""
        tasks = self.pve.get(f"nodes/{self.node}/tasks", vmid=ctid, source="active")
        active = [t for t in tasks if t.get("status") == "running" or not t.get("endtime")]
        if active:
            raise PhoenixError(f"CT {ctid} is locked ({lock}) by a task still running on the node: {active[0].get('upid')}. "
                               "Wait for it to end (see the node's task log), then rerun.")
        raise PhoenixError(f"CT {ctid} is locked ({lock}) but no task is running: an interrupted operation left the lock. "
                           f"Check the guest, then run `pct unlock {ctid}` on the node and rerun.")

    def destroy(self, ctid: int, config: dict[str, Any], steps: Steps) -> None:
        """Destroy a guest check_destroyable() allowed, given the config it read."""
        with steps.step(f"destroy CT {ctid} (was built from other inputs)"):
            if config.get("protection"):
                self.pve.put(self.lxc(ctid, "/config"), protection=0)
            if config.get("lock"):
                self.explain_lock(ctid, config["lock"])
            status = self.pve.get(self.lxc(ctid, "/status/current"))
            if status.get("status") == "running":
                self.pve.run("POST", self.lxc(ctid, "/status/stop"), idempotent=True)
            self.pve.run("DELETE", self.lxc(ctid), purge=1)
        self.run.forget_guest(ctid)

    # --------------------------------------------------------------- bake

    def bake(self, layer: Layer) -> str:
        """Build the layer from scratch (destroying a stale guest first); returns the new build id."""
        steps = Steps(layer, self.run.say)
        g = self.estate.guests[layer.ctid]
        old = self.run.view.get(layer.ctid)
        if old is not None:
            linked = [c for c in self.estate.descendants(layer.ctid) if c in self.run.view] if g.convert_to_template else []
            configs = self.check_destroyable([*linked, layer.ctid])
            for child in reversed(linked):  # linked clones hold the template's base volume: deepest first
                self.destroy(child, configs[child], steps)
            self.destroy(layer.ctid, configs[layer.ctid], steps)
        parent_build = self.run.build_id(layer.parent) if layer.parent is not None else None
        identity = layer.identity(parent_build)
        build_id = new_build_id(identity)
        building = F.building_tags(g.tags)
        temp_desc = F.description(g.description, {"layer": layer.task, "state": "building"})
        settings = layer.settings
        storage = self.estate.storage(layer.ctid)

        if layer.parent is None:
            volume = self.estate.os_template(layer.ctid)
            self.ensure_os_template(volume, steps)
            params = P.create_params(layer.ctid, settings, ostemplate=volume.volume, storage=storage,
                                     unprivileged=g.unprivileged, tags=building, description=temp_desc)
            with steps.step(f"create from {volume.volume}"):
                self.pve.run("POST", f"nodes/{self.node}/lxc", **params)
        else:
            parent = self.estate.guests[layer.parent]
            linked = parent.convert_to_template
            snap = None if linked else parent.template_snapshot_name
            what = f"linked clone of template ct{layer.parent}" if linked else f"clone from ct{layer.parent}@{snap}"
            with self.run.clones.turn(layer.ctid), steps.step(what):
                self.pve.run("POST", self.lxc(layer.parent, "/clone"), retry_locked=True,
                             **P.clone_params(layer.ctid, g.name, snapname=snap, linked=linked, storage=storage,
                                              description=temp_desc))
            with steps.step("configure"):
                self.pve.put(self.lxc(layer.ctid, "/config"), **P.building_params(settings, tags=building, description=temp_desc))
        self.run.view[layer.ctid] = F.GuestFacts(layer.ctid, g.name, tags=F.split_tags(building))
        self.resize_if_needed(layer, parent_gb=self.estate.guests[layer.parent].storage_size_gb if layer.parent else None,
                              steps=steps)
        self.apply_root_options(layer, steps)
        self.start(layer, steps)
        self.run_scripts(layer, steps)
        if (g.is_template_layer and self.estate.hypervisor.behavior.stop_templates_after_build) or g.convert_to_template:
            with steps.step("stop"):
                self.pve.run("POST", self.lxc(layer.ctid, "/status/shutdown"), idempotent=True, timeout=None,
                             forceStop=1)
        if g.template_snapshot_name:
            with steps.step(f"snapshot {g.template_snapshot_name}"):
                self.pve.run("POST", self.lxc(layer.ctid, "/snapshot"), snapname=g.template_snapshot_name,
                             description=f"Phoenix layer {layer.task}, build {build_id}")
        if g.convert_to_template:
            with steps.step("convert to template"):
                self.pve.run("POST", self.lxc(layer.ctid, "/template"))
        self.record(layer, identity, build_id, parent_build, steps)
        return build_id

    def ensure_os_template(self, template: Any, steps: Steps) -> None:
        storage, filename = P.volume_filename(template.volume)
        content = self.pve.get(f"nodes/{self.node}/storage/{storage}/content", content="vztmpl")
        if any(item.get("volid") == template.volume for item in content):
            return
        if not template.url:
            raise PhoenixError(f"OS template {template.volume} is not in storage {storage} and has no url to fetch it "
                               f"from: download it (pveam download {storage} {filename}) or set os_templates.*.url")
        with steps.step(f"download {filename} into {storage}"):
            args: dict[str, Any] = {"url": template.url, "filename": filename, "content": "vztmpl"}
            if template.checksum:
                args.update(checksum=template.checksum, **{"checksum-algorithm": template.checksum_algorithm})
            self.pve.run("POST", f"nodes/{self.node}/storage/{storage}/download-url", **args)

    def resize_if_needed(self, layer: Layer, parent_gb: int | None, steps: Steps) -> None:
        want = layer.settings["rootfs_gb"]
        if parent_gb is not None and want > parent_gb:
            with steps.step(f"grow rootfs {parent_gb} -> {want} GB"):
                self.pve.run("PUT", self.lxc(layer.ctid, "/resize"), disk="rootfs", size=f"{want}G", idempotent=True)

    def apply_root_options(self, layer: Layer, steps: Steps) -> None:
        g = self.estate.guests[layer.ctid]
        devices = P.gpu_devices(list(g.gpu_assignment), self.run.node_facts().nvidia_devices) if g.gpu_assignment else {}
        options = P.root_options(layer.settings, devices)
        if options:
            with steps.step(f"pct set (root only: {', '.join(sorted(options))})"):
                self.run.transport.pct_set(layer.ctid, options)

    def start(self, layer: Layer, steps: Steps) -> None:
        with steps.step("start"):
            status = self.pve.get(self.lxc(layer.ctid, "/status/current"))
            if status.get("status") != "running":
                self.pve.run("POST", self.lxc(layer.ctid, "/status/start"), idempotent=True)

    def run_scripts(self, layer: Layer, steps: Steps) -> None:
        g, lib = self.estate.guests[layer.ctid], self.estate.library
        scripts = [(f"feature {n}", n, lib.feature(n)) for n in g.features]
        if g.application_script:
            scripts.append((f"app {g.application_script}", g.application_script, lib.app(g.application_script)))
        if not scripts:
            return
        context = build_context(self.estate, layer.ctid, self.run.node_facts())
        timeout = g.feature_timeout_s or self.estate.hypervisor.behavior.feature_timeout_s
        for label, name, script in scripts:
            wanted = (*script.secrets, *script.optional_secrets)
            run = ScriptRun(layer.ctid, layer.task, name if name.endswith(".sh") else f"{name}.sh", script.path,
                            lib.lib_path, context, self.run.secrets(wanted, required=script.secrets), timeout,
                            self.run.log_path(layer.task))
            with steps.step(label + (" (simulated)" if self.run.transport.simulated else "")):
                result = self.run.transport.run_script(run, self.run.say)
                if result.timed_out:
                    raise ScriptFailed(f"{layer.task}: {label} timed out after {timeout:.0f}s; last output:\n"
                                       + "\n".join(f"    | {t}" for t in result.tail))
                if result.exit_status != 0:
                    raise ScriptFailed(f"{layer.task}: {label} exited with status {result.exit_status}; last output:\n"
                                       + "\n".join(f"    | {t}" for t in result.tail)
                                       + f"\n  full log: {self.run.log_path(layer.task)}")

    def record(self, layer: Layer, identity: str, build_id: str, parent_build: str | None, steps: Steps) -> None:
        """Write the layer's record: only now is it built."""
        g = self.estate.guests[layer.ctid]
        tags = F.record_tags(g.tags, identity, build_id, layer.settings_hash)
        record = {"layer": layer.task, "identity": identity, "build": build_id, "parent_build": parent_build,
                  "inputs": layer.inputs, "settings": layer.settings, "built_at": int(time.time())}
        with steps.step("record layer identity"):
            self.pve.put(self.lxc(layer.ctid, "/config"),
                         **P.record_params(layer.settings, tags=tags, description=F.description(g.description, record)))
        old = self.run.view.get(layer.ctid) or F.GuestFacts(layer.ctid)
        self.run.view[layer.ctid] = F.with_tags(old, tags, name=g.name, maxmem=g.memory_mb * MIB, maxcpu=g.cores,
                                                maxdisk=g.storage_size_gb * GIB, template=g.convert_to_template)

    # ------------------------------------------------------------- update

    def update(self, layer: Layer, decision: Decision) -> None:
        """Change settings in place: one config PUT (plus root-only settings); restart only if Proxmox needs it."""
        steps = Steps(layer, self.run.say)
        g = self.estate.guests[layer.ctid]
        facts = self.run.view[layer.ctid]
        config = self.pve.get(self.lxc(layer.ctid, "/config"))
        record = F.parse_record(config.get("description"))
        old_settings = record.get("settings")
        record["settings"] = layer.settings
        tags = F.record_tags(g.tags, facts.identity or "", facts.build_id or "", layer.settings_hash)
        with steps.step(f"update in place ({'; '.join(decision.reasons) or 'settings'})"):
            put = P.config_params(layer.settings, tags=tags, description=F.description(g.description, record))
            if put.get("delete") == "features" and "features" not in config:
                put.pop("delete")
            self.pve.put(self.lxc(layer.ctid, "/config"), **put)
        current_gb = facts.maxdisk // GIB if facts.maxdisk else None
        if current_gb and layer.settings["rootfs_gb"] > current_gb:
            self.resize_if_needed(layer, current_gb, steps)
        before = P.root_options(old_settings, {}) if old_settings else {}
        after = P.root_options(layer.settings, {})
        wanted_root = {k: v for k, v in after.items() if before.get(k) != v}
        gone = sorted(set(before) - set(after))
        if gone:
            wanted_root["delete"] = ",".join(gone)
        if wanted_root:
            with steps.step(f"pct set (root only: {', '.join(sorted(wanted_root))})"):
                self.run.transport.pct_set(layer.ctid, wanted_root)
        if facts.status == "running":
            pending = [p for p in self.pve.get(self.lxc(layer.ctid, "/pending")) if "pending" in p or p.get("delete")]
            if pending or wanted_root:
                keys = ", ".join(sorted({p["key"] for p in pending} | set(wanted_root)))
                with steps.step(f"restart: Proxmox applies {keys} only at the next start"):
                    self.pve.run("POST", self.lxc(layer.ctid, "/status/reboot"), idempotent=True)
        self.run.view[layer.ctid] = F.with_tags(facts, tags, maxmem=g.memory_mb * MIB, maxcpu=g.cores,
                                                maxdisk=max(facts.maxdisk, g.storage_size_gb * GIB))


def new_build_id(identity: str) -> str:
    """A build id is new at every bake, so children of a rebuilt layer follow."""
    return hashlib.sha256(f"{identity}:{time.time_ns()}:{_random.token_hex(8)}".encode()).hexdigest()[:12]
