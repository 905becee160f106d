"""Heartbeating clients, pure: TTLs that scale with the number of clients, and expiry.

The gRPC edge is `controlplane.api.heartbeat`.
"""
