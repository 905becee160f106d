"""Tier 4: agents in containers on a local Docker engine (testcontainers)."""
