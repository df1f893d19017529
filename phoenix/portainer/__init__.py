"""Portainer: where it is (target), its API (client), what it has deployed (listing) and what Phoenix sends (render)."""
