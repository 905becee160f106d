"""Token authentication of the public API.

With an `api_token` configured, every RPC of the public services must carry
`authorization: Bearer <token>`: none is UNAUTHENTICATED, another token is
PERMISSION_DENIED. Health and reflection stay open (load balancers and grpcurl
`list` need them), and so does the internal Gossip service, which is protected by
the gossip keyring instead. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc.aio

from controlplane.errors import PermissionDenied, Unauthenticated

Behavior = Callable[..., Any]


class TokenCheck:
    """Checks the bearer token of one call."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    def __call__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        presented = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                presented = value if isinstance(value, str) else value.decode(errors="replace")
                break
        if not presented:
            raise Unauthenticated(
                "this agent requires an API token: send 'authorization: Bearer <token>' "
                "(controlplane --token or CONTROLPLANE_TOKEN; ClientOptions(token=...))"
            )
        scheme, _, token = presented.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self._expected):
            raise PermissionDenied("the API token is not valid for this agent")


def token_check(check: TokenCheck | None) -> Callable[[Any, Any], None] | None:
    """`check` as a guard's check of (request, context): see api/errors.py `guard`."""
    if check is None:
        return None

    def checked(request: Any, context: Any) -> None:
        check(context)

    return checked


def authenticated(behavior: Behavior, check: TokenCheck) -> Behavior:
    """`behavior` (unary coroutine or streaming async generator) behind `check`."""
    if inspect.isasyncgenfunction(behavior):

        async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
            check(context)
            async for response in behavior(request, context):
                yield response

        return streaming

    async def unary(request: Any, context: Any) -> Any:
        check(context)
        return await behavior(request, context)

    return unary
