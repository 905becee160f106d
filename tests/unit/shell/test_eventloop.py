"""controlplane/shell/eventloop.py: which event loop the agent runs on, and uvloop
loaded beside the stand-in `ssl` (shell/nossl.py) rather than OpenSSL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from importlib.metadata import version

import pytest

from controlplane.configerror import ConfigError
from controlplane.shell.eventloop import choose_event_loop, describe_running_loop

UVLOOP = f"uvloop {version('uvloop')}"


def run_on(choice_factory: object) -> str:
    async def describe() -> str:
        return describe_running_loop()

    with asyncio.Runner(loop_factory=choice_factory) as runner:  # type: ignore[arg-type]
        return runner.run(describe())


def test_auto_runs_on_uvloop_when_it_is_installed():
    choice = choose_event_loop("auto")
    assert choice.fallback is None
    assert run_on(choice.factory) == UVLOOP


def test_asyncio_never_loads_uvloop():
    choice = choose_event_loop("asyncio")
    assert (choice.factory, choice.fallback) == (None, None)
    assert run_on(choice.factory) == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed
    choice = choose_event_loop("auto")
    assert choice.factory is None
    assert choice.fallback == "uvloop is not installed; running on asyncio's event loop"
    assert not choice.broken
    with pytest.raises(ConfigError) as raised:
        choose_event_loop("uvloop")
    assert str(raised.value) == (
        "event_loop uvloop: uvloop is not installed (event_loop auto or asyncio runs without)"
    )


def probe(code: str) -> list[str]:
    """`code` in a fresh interpreter, where nothing has loaded OpenSSL yet."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.splitlines()


AGENT_ON_UVLOOP = """
import sys
from controlplane.shell.nossl import import_without_openssl
import_without_openssl("controlplane.agent")
import asyncio
from controlplane.shell.eventloop import choose_event_loop, describe_running_loop

async def main():
    print(describe_running_loop())
    print("ssl" in sys.modules, "_ssl" in sys.modules,
          any("libssl" in line or "_ssl" in line for line in open("/proc/self/maps")))
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await asyncio.open_connection("127.0.0.1", port, ssl=True)
    except Exception as error:
        print(type(error).__name__)
    server.close()

with asyncio.Runner(loop_factory=choose_event_loop("auto").factory) as runner:
    runner.run(main())
import ssl  # later, on purpose: the real module, not the stand-in
print(ssl.OPENSSL_VERSION.split()[0])
"""


def test_uvloop_loads_beside_the_stand_in_and_refuses_tls():
    loop, loaded, refusal, later = probe(AGENT_ON_UVLOOP)
    assert loop == UVLOOP
    assert loaded == "False False False"  # no ssl module, no OpenSSL mapped
    assert refusal == "SslNotLoaded"
    assert later == "OpenSSL"


UVLOOP_THAT_READS_MORE = """
from controlplane.shell.nossl import import_without_openssl
import_without_openssl("controlplane.shell.eventloop")
from controlplane.shell import eventloop, nossl
from controlplane.configerror import ConfigError
stand_in = nossl.ssl_stand_in
def lacking():
    module = stand_in()
    del module.SSL_ERROR_SYSCALL  # as if uvloop read a name the stand-in does not have
    return module
nossl.ssl_stand_in = lacking
choice = eventloop.choose_event_loop("auto")
print(choice.factory, choice.broken)
print(choice.fallback)
try:
    eventloop.choose_event_loop("uvloop")
except ConfigError as error:
    print(error)
"""


def test_a_uvloop_that_fails_to_load_is_a_warning_under_auto_and_an_error_when_asked_for():
    factory, fallback, error = probe(UVLOOP_THAT_READS_MORE)
    assert factory == "None True"
    assert fallback.startswith("uvloop cannot be loaded: AttributeError: ")
    assert "SSL_ERROR_SYSCALL" in fallback
    assert fallback.endswith("; running on asyncio's event loop")
    assert error.startswith("event_loop uvloop: uvloop cannot be loaded: AttributeError: ")
