"""Heartbeating clients, pure: TTLs that scale with the number of clients, and expiry.

The API edge is `controlplane.api.heartbeat`.
"""
