"""Maps the domain error taxonomy to gRPC statuses, once, at the edge.

Servicers raise `controlplane.errors.ControlPlaneError` subclasses; `guard`,
applied to every servicer method, turns each into its status code with a `google.rpc.Status` in
the trailers (with `BadRequest` field violations for invalid arguments), so any
gRPC client can read the details. Any other exception is a bug: it is logged with
its traceback and answered INTERNAL, never UNKNOWN.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import grpc
import grpc.aio

from controlplane.errors import ControlPlaneError, Internal, InvalidArgument

log = logging.getLogger("controlplane.api")

ERROR_DOMAIN = "controlplane"


def status_of(error: ControlPlaneError) -> grpc.Status:
    """The gRPC status (code, message, rich details) that represents `error`."""
    # Imported with the first error: the google.rpc descriptors are memory that an
    # agent answering only successes never needs.
    from google.rpc import error_details_pb2, status_pb2
    from grpc_status import rpc_status

    detail = status_pb2.Status(code=int(error.error_code), message=error.message)
    if isinstance(error, InvalidArgument) and error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        detail.details.add().Pack(bad_request)
    info = error_details_pb2.ErrorInfo(reason=type(error).__name__.upper(), domain=ERROR_DOMAIN)
    detail.details.add().Pack(info)
    assert detail.code != 0  # google.rpc.Code.OK
    status: grpc.Status = rpc_status.to_status(detail)
    return status


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: ControlPlaneError) -> None:
    status = status_of(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


def _internal(method: str, error: Exception) -> ControlPlaneError:
    log.exception("unexpected error in %s", method, exc_info=error)
    return Internal(
        f"internal error in {method}: {type(error).__name__}; the agent log has details"
    )


Behavior = Callable[..., Any]
Check = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], None]
"""Runs before a behavior, inside its guard (a token or size check); raises a
ControlPlaneError to refuse the call."""

# guarded function -> (the behavior it guards, its check), so that a registrar can
# add a check of its own without wrapping the guarded function in another layer.
_PARTS: weakref.WeakKeyDictionary[Behavior, tuple[Behavior, Check | None]] = (
    weakref.WeakKeyDictionary()
)


class RpcObserver(Protocol):
    """Told when each RPC starts and ends (the agent's metrics, when they are on)."""

    def start(self, path: str, streaming: bool) -> None: ...

    def observe(
        self, path: str, streaming: bool, code: grpc.StatusCode, seconds: float
    ) -> None: ...


_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _aborted_code(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    """The code a handler aborted with (gRPC reports it as an enum or a number)."""
    code: object = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        return _CODES_BY_VALUE.get(code, grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.UNKNOWN


def _wrap_unary(
    method: str, behavior: Behavior, check: Check | None, observer: RpcObserver | None
) -> Behavior:
    # One coroutine per call around the behavior's own: every layer of wrapping costs
    # a coroutine and an await on each call.
    async def guarded(request_or_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if observer is not None:
            observer.start(method, False)
            started = time.perf_counter()
        code = grpc.StatusCode.OK
        failure: ControlPlaneError | None = None
        try:
            if check is not None:
                check(request_or_iterator, context)
            return await behavior(request_or_iterator, context)
        except ControlPlaneError as error:
            code, failure = error.code, error
        except grpc.aio.AbortError:
            code = _aborted_code(context)
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            code, failure = grpc.StatusCode.INTERNAL, _internal(method, error)
        finally:
            if observer is not None:
                observer.observe(method, False, code, time.perf_counter() - started)
        if failure is not None:
            # Counted before the status leaves: abort sends it at once, and a caller
            # that reads the metrics right after the answer must find the call counted.
            await _abort(context, failure)
        return None

    return guarded


def _wrap_stream(
    method: str, behavior: Behavior, check: Check | None, observer: RpcObserver | None
) -> Behavior:
    if not inspect.isasyncgenfunction(behavior):
        # A streaming handler written with context.write() is a plain coroutine.
        return _wrap_unary(method, behavior, check, observer)

    async def guarded(
        request_or_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        if observer is not None:
            observer.start(method, True)
            started = time.perf_counter()
        code = grpc.StatusCode.OK
        failure: ControlPlaneError | None = None
        try:
            if check is not None:
                check(request_or_iterator, context)
            async for response in behavior(request_or_iterator, context):
                yield response
        except ControlPlaneError as error:
            code, failure = error.code, error
        except grpc.aio.AbortError:
            code = _aborted_code(context)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            code, failure = grpc.StatusCode.INTERNAL, _internal(method, error)
        finally:
            if observer is not None:
                observer.observe(method, True, code, time.perf_counter() - started)
        if failure is not None:
            # Counted before the status leaves, as for unary calls.
            await _abort(context, failure)

    return guarded


def guard(
    method: str,
    behavior: Behavior,
    check: Check | None = None,
    observer: RpcObserver | None = None,
) -> Behavior:
    """`behavior` (a unary coroutine or a streaming async generator) with every
    exception mapped to a status, after `check` (if any) accepted the call, and
    `observer` (if any) told when the call starts and how it ends. Applied once, when
    a servicer is built, rather than by an interceptor on every call: interceptors
    cost a handler lookup and a new handler object per RPC."""
    if inspect.isasyncgenfunction(behavior):
        guarded = _wrap_stream(method, behavior, check, observer)
    else:
        guarded = _wrap_unary(method, behavior, check, observer)
    _PARTS[guarded] = (behavior, check)
    return guarded


def guarded_parts(function: Behavior) -> tuple[Behavior, Check | None] | None:
    """The behavior and check a `guard` result wraps, or None for anything else."""
    try:
        return _PARTS.get(function)
    except TypeError:  # not weakly referenceable, so not a guard result
        return None
