"""Server records: what the pool knows about one server, and API-version rules.

This module owns the :class:`Server` value type, address validation
(``host:port``) and the API-version compatibility rule used to filter servers
out of the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.pool.errors import (
    InvalidAddressError,
    InvalidApiVersionError,
    InvalidServerError,
)

__all__ = ["ApiVersion", "Server", "is_api_compatible", "parse_address"]

# The highest TCP/UDP port number; port 0 means "any port" and cannot be dialled.
_MAX_PORT = 65535


def parse_address(address: str, *, field: str = "address") -> tuple[str, int]:
    """Split ``host:port`` into its host and port, validating both.

    IPv6 literals must be bracketed (``[::1]:7946``), as in RPC target strings,
    because an unbracketed ``::1:7946`` is ambiguous.

    Raises:
        InvalidAddressError: the address is empty, has no port, has a port outside
            1..65535, or has an empty or malformed host.
    """
    expected = f"must be 'host:port' with a port in 1..{_MAX_PORT}, got {address!r}"
    if not isinstance(address, str) or not address or address != address.strip():
        raise InvalidAddressError(field, expected)
    host, separator, port_text = address.rpartition(":")
    if not separator or not host or not port_text.isdigit():
        raise InvalidAddressError(field, expected)
    port = int(port_text)
    if not 1 <= port <= _MAX_PORT:
        raise InvalidAddressError(field, expected)
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise InvalidAddressError(field, expected)
    elif ":" in host:
        raise InvalidAddressError(
            field, f"IPv6 hosts must be bracketed as '[addr]:port', got {address!r}"
        )
    if any(character.isspace() for character in host):
        raise InvalidAddressError(field, expected)
    return host, port


@dataclass(frozen=True, order=True, slots=True)
class ApiVersion:
    """The (major, minor) version of the public API a client or server speaks.

    A change of major version is incompatible; a newer minor version may add
    calls an older peer does not know (see :func:`is_api_compatible`).
    """

    major: int
    minor: int

    def __post_init__(self) -> None:
        for field_name, value in (("major", self.major), ("minor", self.minor)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidApiVersionError(
                    f"api_version.{field_name}", f"must be an integer >= 0, got {value!r}"
                )

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}"


def is_api_compatible(client: ApiVersion, server: ApiVersion | None) -> bool:
    """Whether a client speaking ``client`` may use a server speaking ``server``.

    The rule follows Nomad's RPC proxy (``RefreshServerLists`` drops servers with a
    newer major or newer minor version than the client) and is stricter in one
    way, as the design asks: a server with an *older* major version is dropped
    too, because a major change means the wire contract changed in either
    direction. Servers with the same major and an older or equal minor version are
    kept: minor versions only add to the API. A server whose version is unknown
    (``None``, e.g. an address discovered from a seed) is assumed compatible until
    a heartbeat says otherwise.
    """
    if server is None:
        return True
    return server.major == client.major and server.minor <= client.minor


@dataclass(frozen=True, slots=True)
class Server:
    """One server as the pool sees it. Immutable; the pool replaces records.

    Attributes:
        name: the server's unique name (its gossip member name). The pool keys
            every server by name, as Consul's manager does, so a record with an
            existing name replaces the old details in place.
        address: where its API listens, ``host:port`` (IPv6 bracketed).
        api_version: the API version it announces, or ``None`` when unknown.
        draining: the server announced it is shutting down or shedding clients;
            the pool moves it behind every other server (see ``ServerPool``).
        datacenter: where the server runs; carried for callers, not used to order.
    """

    name: str
    address: str
    api_version: ApiVersion | None = None
    draining: bool = False
    datacenter: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidServerError("name", f"must be a non-empty string, got {self.name!r}")
        parse_address(self.address)
        if self.api_version is not None and not isinstance(self.api_version, ApiVersion):
            raise InvalidServerError(
                "api_version", f"must be an ApiVersion or None, got {self.api_version!r}"
            )
        if not isinstance(self.draining, bool):
            raise InvalidServerError("draining", f"must be a bool, got {self.draining!r}")

    @classmethod
    def from_address(cls, address: str) -> Server:
        """A server known only by its address (a seed or DNS answer): named after it."""
        parse_address(address)
        return cls(name=address, address=address)

    def __str__(self) -> str:
        return f"{self.name} ({self.address})"
