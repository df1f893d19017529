"""What the run says is what it does: VM features say "(simulated)" in the simulator, an in-place update sends only
what changed (the guest keeps its MAC), and a restart names only what Proxmox holds until then."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

from .conftest import NODE, Checkout


def puts(co: Checkout, path: str, since: int) -> list[dict[str, str]]:
    return [dict(parse_qsl(b.decode())) for m, p, b in co.pve.requests[since:] if m == "PUT" and p == path]


def test_vm_features_say_simulated_and_a_memory_change_sends_only_memory(vm_checkout: Checkout):
    co = vm_checkout
    first = co.doit()
    assert first.rc == 0, first.output
    for line in first.output.splitlines():  # every feature run through a VM's guest agent is simulated here
        if re.match(r"^vm\d+\s+feature \S+", line):
            assert "(simulated)" in line, line
    assert re.search(r"^vm9001 feature docker \(simulated\)  [\d.]+s$", first.output, re.M), first.output
    assert co.pve.vm(1001).config["net0"] == "virtio,bridge=vmbr0"
    mac = co.pve.vm(1001).config["net0"] = "virtio=BC:24:11:00:10:01,bridge=vmbr0"  # as a real node assigns one

    path = co.root / "etc" / "phoenix_vm_configs.json"
    data = json.loads(path.read_text())
    data["virtual_machines"][2].update(memory_mb=6144)
    path.write_text(json.dumps(data))
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0 and result.outcomes()["vm1001"] == "updated", result.output
    [sent] = puts(co, f"{NODE}/qemu/1001/config", mark)
    assert set(sent) == {"memory", "tags", "description"}, sent  # not cores, sockets, name or net0
    assert sent["memory"] == "6144"
    assert co.pve.vm(1001).config["net0"] == mac  # the guest keeps its MAC
    restart = [x for x in result.output.splitlines() if "restart: Proxmox applies" in x]
    assert [re.sub(r"  [\d.]+s$", "", x) for x in restart] == \
        ["vm1001 restart: Proxmox applies memory only at the next start"], result.output  # one change, named once

    # a bridge change sends net0 alone, with the guest's MAC kept (vmbr1 made on the node, as host:network would)
    co.pve.node_state["network"]["vmbr1"] = {"type": "bridge", "active": 1, "autostart": 1}
    data["virtual_machines"][2]["network_bridge"] = "vmbr1"
    path.write_text(json.dumps(data))
    mark = co.mark()
    again = co.doit()
    assert again.rc == 0, again.output
    [sent] = puts(co, f"{NODE}/qemu/1001/config", mark)
    assert set(sent) == {"net0", "tags", "description"}, sent
    assert sent["net0"] == mac.replace("bridge=vmbr0", "bridge=vmbr1"), (sent, mac)
    assert co.doit().outcomes()["vm1001"] == "up-to-date"


def test_a_guest_stopped_by_hand_is_started_again_in_place(vm_checkout: Checkout):
    co = vm_checkout
    assert co.doit().rc == 0
    co.pve.ct(950).status = "stopped"      # `pct stop 950` by hand: the config keeps it running
    co.pve.vm(1002).status = "stopped"     # `qm stop 1002`
    plan = co.doit("plan")
    assert re.search(r"^ct950\s+update: stopped → start$", plan.output, re.M), plan.output
    assert re.search(r"^vm1002\s+update: stopped → start$", plan.output, re.M), plan.output
    assert re.search(r"^ct900\s+up-to-date$", plan.output, re.M), plan.output    # a template layer stays stopped
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0, result.output
    assert {k: v for k, v in result.outcomes().items() if v != "up-to-date"} == {"ct950": "updated", "vm1002": "updated"}
    writes = [(m, p) for m, p, _ in co.pve.requests[mark:] if m != "GET" and "/pools" not in p]  # the lease aside
    assert sorted(writes) == [("POST", f"{NODE}/lxc/950/status/start"), ("POST", f"{NODE}/qemu/1002/status/start")]
    assert co.pve.ct(950).status == "running" and co.pve.vm(1002).status == "running"
    assert co.pve.ct(900).status == "stopped"
    mark = co.mark()
    assert co.doit().rc == 0 and "nothing to do" in co.doit().output
