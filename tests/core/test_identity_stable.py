"""The example estate's identities are pinned: a refactoring must never rebuild a user's estate by accident.

Every built guest carries its layer identity and settings hash in its tags. If Phoenix changed how either is
computed for the same config, every user's estate would be rebaked (or updated) at the next run after an
upgrade. Script digests are left out: they follow the scripts' own content.
"""

from __future__ import annotations

from pathlib import Path

from phoenix.config.estate import load_estate
from phoenix.kinds.lxc.resources import resources

REPO = Path(__file__).resolve().parents[2]

PINNED = {  # ctid: (os_template, config, app_config, settings hash)
    900: ("eff4c13027f7", "addfe8231d4c", None, "50f2251aa1"),
    901: (None, "cad6bb99cc2a", None, "21d191ca61"),
    902: (None, "399990a475d6", None, "8ca58d1a1e"),
    910: (None, "f51fa4f93457", "c9a5476f15d9", "5281172029"),   # portainer 2.33.5 by default
    920: (None, "1410cce37733", None, "204fc28deb"),
    950: (None, "d66920da00cc", "88618b01ec63", "0786fc84de"),   # nesting; the app defaults hold portainer 2.33.5
}


def test_example_identities_are_unchanged():
    found = {layer.vmid: (layer.inputs.get("os_template"), layer.inputs["config"], layer.inputs.get("app_config"),
                          layer.settings_hash)
             for layer in resources(load_estate(REPO / "etc", REPO / "images")).values()}
    assert found == PINNED
