"""A guest's app settings (`app.portainer`, `app.vllm`), and the flat keys they replace (`vllm_model`, …)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .strict import Strict


class PortainerApp(Strict):
    """Portainer (the 910 app)."""

    role: Literal["server", "agent", "none"] = "none"
    port: int = Field(9443, ge=1, le=65535)
    version: str = Field("2.33.5", pattern=r"^[0-9][0-9A-Za-z.-]*$")


class VllmApp(Strict):
    """vLLM serving one model (the 950 app); the tensor parallel size is the number of GPUs."""

    version: str = Field("0.10.1.1", pattern=r"^[0-9][0-9A-Za-z.+-]*$")
    model: str | None = Field(None, description="Hugging Face model id, e.g. Qwen/Qwen3-Coder-30B-A3B-Instruct.")
    served_model_name: str | None = Field(None, description="Defaults to the last part of model.")
    port: int = Field(8000, ge=1, le=65535)
    max_model_len: int | None = Field(None, ge=128)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    dtype: str = Field("auto", pattern=r"^[a-z0-9_]+$")
    args: list[str] = Field(default_factory=list, description="More `vllm serve` arguments, one per item.")


class AppSettings(Strict):
    """Settings of the app an application_script runs; part of the app's identity (a change rebakes it)."""

    portainer: PortainerApp = Field(default_factory=PortainerApp)
    vllm: VllmApp = Field(default_factory=VllmApp)


SECTIONS: dict[str, type[Strict]] = {"portainer": PortainerApp, "vllm": VllmApp}

# The flat keys of the first config format: "vllm_model" -> ("vllm", "model"), every field of every section.
FLAT_KEYS: dict[str, tuple[str, str]] = {
    f"{section}_{name}": (section, name) for section, model in SECTIONS.items() for name in model.model_fields
}


def flat_fields(app: AppSettings) -> dict[str, Any]:
    """The settings as the flat keys name them ({"portainer_role": "none", …, "vllm_args": []})."""
    return {flat: getattr(getattr(app, section), name) for flat, (section, name) in FLAT_KEYS.items()}


def move_flat_keys(guest: dict[str, Any]) -> dict[str, Any]:
    """A guest's raw config with its flat keys moved under app (a new dict; the input is left alone).

    A flat key whose new spelling is set too stays where it is: it is then reported as given twice.
    """
    present = [k for k in FLAT_KEYS if k in guest]
    app = guest.get("app", {})
    if not present or not isinstance(app, dict):
        return guest
    out, app = dict(guest), dict(app)
    for flat in present:
        section, name = FLAT_KEYS[flat]
        values = app.get(section, {})
        if not isinstance(values, dict) or name in values:
            continue
        app[section] = {**values, name: out.pop(flat)}
    out["app"] = app
    return out
