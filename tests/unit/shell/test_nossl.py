"""controlplane/shell/nossl.py: the agent loads without Python's OpenSSL bindings,
and what it uses in their place still works."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from controlplane.shell.nossl import import_without_openssl
agent = import_without_openssl("controlplane.agent")
mapped = any("libcrypto" in line or "_ssl" in line for line in open("/proc/self/maps"))
print(agent.__name__, "ssl" in sys.modules, "_hashlib" in sys.modules, mapped)
import asyncio, hashlib, hmac
print(hmac.compare_digest("same", "same"), hmac.compare_digest("same", "diff"))
print(hashlib.sha256(b"abc").hexdigest()[:16])
import ssl  # imported later, on purpose: the block is lifted after the agent loads
print(ssl.OPENSSL_VERSION.split()[0])
"""


def run(probe: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.splitlines()


def test_the_agent_loads_without_openssl_and_its_fallbacks_work():
    loaded, compare, digest, later = run(PROBE)
    assert loaded == "controlplane.agent False False False"
    assert compare == "True False"
    assert digest == "ba7816bf8f01cfea"  # SHA-256("abc"), FIPS 180-2 test vector
    assert later == "OpenSSL"


def test_nothing_is_blocked_once_openssl_is_loaded():
    probe = """
import sys, ssl
from controlplane.shell.nossl import import_without_openssl
import_without_openssl("controlplane.agent")
import _hashlib
print("_hashlib" in sys.modules, sys.modules["ssl"] is ssl)
"""
    assert run(probe) == ["True True"]


def test_hashlib_keeps_openssl_where_python_has_no_builtin_sha256(monkeypatch):
    from controlplane.shell import nossl

    assert nossl.blocked_modules() == ("ssl", "_ssl", "_hashlib")  # this CPython's build
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert nossl.blocked_modules() == ("ssl", "_ssl")
