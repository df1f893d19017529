"""Maintenance commands run from a checkout (`python -m phoenix.tools.<name>`), not during a build."""
