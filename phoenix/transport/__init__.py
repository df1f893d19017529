"""Reaching inside guests and making root-only settings: the node transport (simulated or SSH)."""
