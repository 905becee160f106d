"""The client's channels: TLS when configured, and the API token with every call,
as agents started with `api_token` require.

The token travels as `authorization: Bearer <token>` metadata, added by a client
interceptor on each channel the client opens, so no call site can forget it.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import grpc
import grpc.aio

_Details = namedtuple(
    "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
)


class _CallDetails(_Details, grpc.ClientCallDetails):
    """grpc.ClientCallDetails with replaced metadata."""


def bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


class TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds the token to every unary and server-streaming call of a blocking channel."""

    def __init__(self, token: str) -> None:
        self._entry = bearer(token)

    def _details(self, details: Any) -> _CallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            (*(details.metadata or ()), self._entry),
            details.credentials,
            details.wait_for_ready,
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


class _AsyncToken:
    def __init__(self, token: str) -> None:
        self._entry = bearer(token)

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(
            details.method,
            details.timeout,
            grpc.aio.Metadata(*(details.metadata or ()), self._entry),
            details.credentials,
            details.wait_for_ready,
        )


class AsyncUnaryToken(_AsyncToken, grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the token to every unary call of an asyncio channel."""

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class AsyncStreamToken(_AsyncToken, grpc.aio.UnaryStreamClientInterceptor):
    """Adds the token to every server-streaming call of an asyncio channel."""

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


def _tls_options(
    options: list[tuple[str, Any]], credentials: grpc.ChannelCredentials | None, server_name: str
) -> list[tuple[str, Any]]:
    if credentials is not None and server_name:
        # gRPC checks this name, instead of the dialled host, against the certificate.
        return [*options, ("grpc.ssl_target_name_override", server_name)]
    return options


def sync_channel(
    address: str,
    options: list[tuple[str, Any]],
    token: str,
    credentials: grpc.ChannelCredentials | None = None,
    server_name: str = "",
) -> grpc.Channel:
    """A blocking channel: TLS with `credentials` (None: plaintext), the token on each call."""
    options = _tls_options(options, credentials, server_name)
    if credentials is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        channel = grpc.secure_channel(address, credentials, options=options)
    return grpc.intercept_channel(channel, TokenInterceptor(token)) if token else channel


def async_channel(
    address: str,
    options: list[tuple[str, Any]],
    token: str,
    credentials: grpc.ChannelCredentials | None = None,
    server_name: str = "",
) -> grpc.aio.Channel:
    """An asyncio channel: TLS with `credentials` (None: plaintext), the token on each call."""
    options = _tls_options(options, credentials, server_name)
    interceptors: list[grpc.aio.ClientInterceptor] | None = (
        [AsyncUnaryToken(token), AsyncStreamToken(token)] if token else None
    )
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)
