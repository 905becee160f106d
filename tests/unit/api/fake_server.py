"""A stand-in for grpc.aio.Server that records what a registrar attaches."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


class RecordingServer:
    """Keeps the generic handlers a registrar adds and refuses registered methods:
    grpc.aio's server loop passes one future per registered method to
    `asyncio.wait` on every call it accepts (api/services.py)."""

    def __init__(self) -> None:
        self.generic: list[Any] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, name: str, handlers: Any) -> None:
        raise AssertionError(f"{name}: registered methods make every call O(methods)")

    def handler(self, service: str, method: str) -> Any:
        """The handler a call of /service/method would get, as grpc finds it."""
        details = SimpleNamespace(method=f"/{service}/{method}", invocation_metadata=())
        for generic in self.generic:
            found = generic.service(details)
            if found is not None:
                return found
        return None
