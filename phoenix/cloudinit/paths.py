"""Where cloud-init templates and rendered files live (no Jinja: a no-op run lists them without rendering)."""

from __future__ import annotations

from pathlib import Path

FILES = ("user-data", "network-config", "meta-data")


def templates_dir(images_dir: Path) -> Path:
    """cloudinit/ lives next to images/ at the top of the project."""
    return Path(images_dir).parent / "cloudinit"


def template_files(directory: Path) -> list[Path]:
    """Every template under cloudinit/ (shared and per-VM): what renders depend on."""
    return sorted(p for p in directory.rglob("*.j2") if p.is_file()) if directory.is_dir() else []


def out_dir(cache: Path, vmid: int) -> Path:
    return Path(cache) / "cloudinit" / str(vmid)


def targets(cache: Path, vmid: int) -> list[Path]:
    return [out_dir(cache, vmid) / name for name in FILES]
