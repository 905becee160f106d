"""Which RPCs the client may repeat on another server after a failure.

A call that fails with UNAVAILABLE or DEADLINE_EXCEEDED may or may not have
reached the agent. Reads and watches change nothing, so the client retries them
on the next server. Writes are never repeated: repeating `FireUserEvent` would
fire a second event, repeating `AddNode` could re-add a node removed meanwhile,
and so on; such a failure is raised to the caller, whose message says the call
may or may not have been applied.

The table names every RPC of the public API; an RPC missing from it is treated
as not idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["IDEMPOTENT", "is_idempotent"]

_TABLE: dict[str, bool] = {
    # Membership
    "Membership/ListMembers": True,
    "Membership/GetLocalMember": True,
    "Membership/GetCoordinate": True,
    "Membership/GetLeader": True,
    "Membership/WatchMembers": True,
    "Membership/WatchEvents": True,
    "Membership/WatchLeader": True,
    "Membership/GetInfo": True,
    "Membership/GetLeaderHistory": True,
    "Membership/Monitor": True,
    "Membership/Join": False,
    "Membership/Leave": False,
    "Membership/UpdateTags": False,
    "Membership/ForceLeave": False,
    "Membership/FireUserEvent": False,
    # A repeated query would run the members' handlers twice; a response goes to the
    # one agent that received the query. Watching queries changes nothing.
    "Membership/Query": False,
    "Membership/RespondQuery": False,
    "Membership/WatchQueries": True,
    # ServerPool
    "ServerPool/Heartbeat": True,
    "ServerPool/FindServer": True,
    "ServerPool/ListServers": True,
    "ServerPool/ListClients": True,
    "ServerPool/NotifyFailedServer": False,
    "ServerPool/RefreshServerLists": False,
    "ServerPool/SetBackupServers": False,
    "ServerPool/AddServer": False,
    "ServerPool/RemoveServer": False,
    "ServerPool/RebalanceServers": False,
    # Ring
    "Ring/GetNode": True,
    "Ring/GetNodes": True,
    "Ring/ListNodes": True,
    "Ring/GetRing": True,
    "Ring/WatchRing": True,
    "Ring/AddNode": False,
    "Ring/RemoveNode": False,
    # Keyring: reads are idempotent; key changes are not repeated.
    "Keyring/ListKeys": True,
    "Keyring/InstallKey": False,
    "Keyring/UseKey": False,
    "Keyring/RemoveKey": False,
}

IDEMPOTENT: Mapping[str, bool] = MappingProxyType(_TABLE)
"""`"Service/Method"` -> whether the client retries it on another server."""


def is_idempotent(method: str) -> bool:
    """`method` is `"Service/Method"` or a full `/controlplane.v1.Service/Method`."""
    name = method.rsplit(".", 1)[-1] if method.startswith("/") else method
    return _TABLE.get(name.lstrip("/"), False)
