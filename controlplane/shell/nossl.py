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
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType


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
