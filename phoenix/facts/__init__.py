"""Facts: what Phoenix reads from the host, as pure parsers of what the host answered.

`guests`: the guests of the run's one bulk listing and the record Phoenix keeps on each;
`node`: the Proxmox node itself (the NVIDIA devices and driver), from a query run over the node's shell.
"""
