"""The Proxmox node beyond its API: a shell on it (SSH), `pct` over that shell, node facts; or the simulated node."""
