"""Routers per concern; each module exposes ``router``."""
