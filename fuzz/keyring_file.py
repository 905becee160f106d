"""Fuzz the keyring file parser (``KeyringFile.load``), which must fail closed.

The input is written as ``<data_dir>/serf/local.keyring`` in a private temporary
directory. ``ConfigError`` is the documented refusal; anything else is a crash.

    python -m fuzz.keyring_file --seconds 60
"""

from __future__ import annotations

import tempfile

import atheris  # type: ignore[import-untyped]

# Only the project is instrumented: coverage of grpc, protobuf and asyncio would not
# guide the fuzzer and instrumenting them costs seconds at every start.
with atheris.instrument_imports(include=["controlplane"]):
    from controlplane.api.keyring import KeyringFile
    from controlplane.configerror import ConfigError
    from fuzz.runner import main

_DIR = tempfile.mkdtemp(prefix="fuzz-keyring-")
_FILE = KeyringFile(_DIR)
_FILE.path.parent.mkdir(parents=True, exist_ok=True)


def target(data: bytes) -> None:
    _FILE.path.write_bytes(data)
    _FILE.load()


SEEDS = [
    b'["AAECAwQFBgcICQoLDA0ODw=="]',
    b'["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "AAECAwQFBgcICQoLDA0ODw=="]',
    b"[]",
]

if __name__ == "__main__":
    main("keyring_file", target, (ConfigError,), SEEDS)
