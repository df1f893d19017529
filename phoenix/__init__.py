"""Phoenix: build a Proxmox VE estate from declarative files, incrementally, with doit."""

__version__ = "0.1.0"
