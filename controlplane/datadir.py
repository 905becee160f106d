"""The agent's data directory: the checks made at start, atomic writes, and what
a failed write means for the request that needed it.

Fail closed: a state file that exists but cannot be read or parsed stops the
start (`ConfigError`, exit 2) rather than being replaced, because replacing
it could silently change security (a rotated-out gossip key) or lose state that
a restart should have kept. A write that fails while running fails the request
that needed it, with the status an operator can act on: RESOURCE_EXHAUSTED when
the disk or quota is full, UNAVAILABLE otherwise (read-only, permissions, I/O).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from controlplane.configerror import ConfigError
from controlplane.errors import ControlPlaneError, ResourceExhausted, Unavailable

# errno values that mean "no room": the operator frees space or raises a quota.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def check_data_dir(data_dir: str) -> None:
    """Creates the data directory (and its `serf/` part) if needed and proves that
    files can be listed, created and removed in it; raises ConfigError naming
    the directory and the problem."""
    path = Path(data_dir)
    import tempfile  # only an agent with a data directory needs it

    for directory in (path, path / "serf"):
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"data directory {str(directory)!r} is not a directory") from None
        except OSError as error:
            raise ConfigError(
                f"data directory {str(directory)!r} cannot be created: {_reason(error)}"
            ) from None
        try:
            os.listdir(directory)
            # A root agent passes any permission check, so only a real file
            # creation shows a read-only mount or a full inode table.
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
                pass
        except OSError as error:
            raise ConfigError(
                f"data directory {str(directory)!r} is not usable: {_reason(error)}"
            ) from None


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replaces `path` with `data`: a temporary file, fsynced, renamed over it.

    The file is always the old or the new version. On failure the temporary file is
    removed (on a full disk it holds the space that is missing) and the OSError
    is raised for the caller to report."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with open(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def write_failure(what: str, path: Path, error: OSError) -> ControlPlaneError:
    """The domain error for a write that failed: `what` names what was not stored."""
    message = f"{what}: cannot write {path}: {_reason(error)}"
    if error.errno in NO_SPACE:
        return ResourceExhausted(message)
    return Unavailable(message)


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
