"""Cloud-init for VMs: the snippets rendered from cloudinit/*.yml.j2 (render.py), checked against cloud-init's own
JSON schemas (validate.py) before anything reaches a host."""
