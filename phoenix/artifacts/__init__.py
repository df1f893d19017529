"""Template layers as portable archives (issue 15): an artifact store keyed by layer identity, export and restore.

store.py keeps the archives and their manifests (a local directory or a mounted share); export.py makes one from a
layer on the host (vzdump, then the archive copied from the node); restore is planned by the planner (an archive
whose identity matches) and made by the kind's restore steps.
"""
