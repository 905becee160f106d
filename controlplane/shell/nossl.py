"""Loads the agent without Python's OpenSSL bindings, which it never uses.

Importing asyncio imports `ssl` (for asyncio's own TLS transports), and `hmac`,
`hashlib` and `secrets` import `_hashlib`; together they load and initialise
OpenSSL and turn its constants into enums: about 7 MB of resident memory, a sixth
of an idle agent's. The agent uses none of it. Its TLS is gRPC's (BoringSSL, inside
grpcio), certificates are read with `cryptography` (which carries its own OpenSSL),
and its few digests are short.

CPython supports being built without OpenSSL, and every module involved falls back
by design when it is missing: asyncio runs without TLS transports, `hashlib` uses
its built-in SHA-2 and BLAKE2, `hmac.compare_digest` the constant-time comparison
of the `operator` module. `import_without_openssl` imports the agent that way, and
then lifts the block: a module imported later (a metrics library, say) can still
import `ssl`, and only then pays for it; asyncio's own TLS transports stay
unavailable in the process (asyncio noted the missing module when it loaded).

uvloop, the agent's event loop where it is installed (shell/eventloop.py), reads a
few names of `ssl` as it loads, for TLS transports the agent never uses either:
`import_beside_ssl_stand_in` gives it a stand-in module that has those names and
refuses to make TLS objects, so that it too loads without OpenSSL.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import NoReturn


def blocked_modules() -> tuple[str, ...]:
    """The OpenSSL modules to block. `_hashlib` only where `hashlib` has a built-in
    SHA-256 to fall back to: CPython may be built with fewer built-in hashes
    (`--with-builtin-hashlib-hashes`), and the agent needs SHA-256 (page tokens)."""
    builtin_sha256 = any(importlib.util.find_spec(name) for name in ("_sha256", "_sha2"))
    return ("ssl", "_ssl", "_hashlib") if builtin_sha256 else ("ssl", "_ssl")


def import_without_openssl(name: str) -> ModuleType:
    """Imports module `name` and what it imports as CPython without OpenSSL would.

    Nothing is blocked when any of the OpenSSL modules is already loaded (as in a
    test process): the memory is spent already, and a module that holds them must
    keep working as it was.
    """
    blocked = blocked_modules()
    if any(module in sys.modules for module in blocked):
        return importlib.import_module(name)
    for module in blocked:
        sys.modules[module] = None  # type: ignore[assignment]  # "import halted"
    try:
        return importlib.import_module(name)
    finally:
        for module in blocked:
            if sys.modules.get(module, 0) is None:
                del sys.modules[module]


class SslNotLoaded(RuntimeError):
    """Raised by the stand-in `ssl` when something asks it for TLS."""


def _not_loaded(*args: object, **kwargs: object) -> NoReturn:
    raise SslNotLoaded(
        "Python's ssl module is not loaded in the agent (controlplane/shell/nossl.py); "
        "its event loop has no TLS transports"
    )


def ssl_stand_in() -> ModuleType:
    """A module named `ssl` with the names uvloop reads from `ssl` as it loads
    (uvloop 0.23, `uvloop/includes/stdlib.pxi`): the classes and the function behind
    its TLS transports, which refuse to be used, the exceptions it catches, and the
    three OpenSSL error codes it compares with (their OpenSSL values). Nothing in the
    agent asks its event loop for TLS. A uvloop that reads more fails to load, and
    the agent runs on asyncio's loop (shell/eventloop.py)."""
    ssl_error = type("SSLError", (OSError,), {})
    names: dict[str, object] = {
        name: type(name, (), {"__init__": _not_loaded})
        for name in ("SSLContext", "MemoryBIO", "SSLObject")
    }
    names |= {
        name: type(name, (ssl_error,), {})
        for name in (
            "SSLWantReadError",
            "SSLWantWriteError",
            "SSLSyscallError",
            "SSLZeroReturnError",
        )
    }
    names |= {
        "create_default_context": _not_loaded,
        "SSLError": ssl_error,
        "CertificateError": type("CertificateError", (ssl_error, ValueError), {}),
        "SSL_ERROR_WANT_READ": 2,
        "SSL_ERROR_WANT_WRITE": 3,
        "SSL_ERROR_SYSCALL": 5,
    }
    stand_in = ModuleType("ssl", "Stand-in for ssl: the agent runs without OpenSSL's bindings.")
    for name, value in names.items():
        setattr(stand_in, name, value)
    return stand_in


def import_beside_ssl_stand_in(name: str) -> ModuleType:
    """Imports module `name` (uvloop), which reads names of `ssl` as it loads, against
    `ssl_stand_in()` rather than the real module, so that it does not load OpenSSL
    into the agent. The stand-in is taken away again afterwards: a module imported
    later that imports `ssl` gets the real one (and only then pays for it).

    When the real `ssl` is already loaded (a test process), `name` is imported as it
    is, against the real module."""
    if sys.modules.get("ssl") is not None:
        return importlib.import_module(name)
    had_marker = "ssl" in sys.modules  # None: import_without_openssl is blocking it
    sys.modules["ssl"] = ssl_stand_in()
    try:
        return importlib.import_module(name)
    finally:
        if had_marker:
            sys.modules["ssl"] = None  # type: ignore[assignment]
        else:
            del sys.modules["ssl"]
