"""The Proxmox cluster Phoenix drives: its members as the run's one listing shows them (`facts`), where each guest
goes (`placement`), and the per-node copies of layers that children on another member clone from (`copies`).

A single node is a cluster of one. Nothing here makes a request: the run reads the listing once and hands it over.
"""
