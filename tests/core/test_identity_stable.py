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
    # The NVIDIA driver version left the config digest of layers that do not run the nvidia feature (2026-11-29): a
    # new driver rebakes 901 and its clones, no longer 900, 902 and 910. Every example identity changed once then.
    900: ("eff4c13027f7", "1e283bcece92", None, "50f2251aa1"),
    901: (None, "724112f74845", None, "21d191ca61"),
    902: (None, "33fbbc73b5be", None, "8ca58d1a1e"),
    910: (None, "fd586d52fe81", "c9a5476f15d9", "5281172029"),   # portainer 2.33.5 by default
    920: (None, "213605e92667", None, "204fc28deb"),
    950: (None, "1c3291b62c53", "88618b01ec63", "0786fc84de"),   # nesting; the app defaults hold portainer 2.33.5
}


def test_example_identities_are_unchanged():
    found = {layer.vmid: (layer.inputs.get("os_template"), layer.inputs["config"], layer.inputs.get("app_config"),
                          layer.settings_hash)
             for layer in resources(load_estate(REPO / "etc", REPO / "images")).values()}
    assert found == PINNED


def test_the_driver_version_is_an_input_of_the_layers_that_run_the_nvidia_feature_only():
    layers = resources(load_estate(REPO / "etc", REPO / "images"))
    assert {layer.vmid for layer in layers.values() if "driver" in layer.inputs} == {901}
