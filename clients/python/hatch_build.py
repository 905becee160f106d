"""Build hook: writes the blocking client (`controlplane/client/sync.py`) and the
blocking health check from their asyncio sources before the wheel is assembled.

The generated files are not committed (see tools/unasync.py); every build or
install of this distribution, editable ones included, makes them. A build from a
copy without the repository's tools/ directory (an sdist) uses the files as they
are, and fails if they are missing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

HERE = Path(__file__).resolve().parent
GENERATOR = HERE.parent.parent / "tools" / "unasync.py"
GENERATED = ("controlplane/client/sync.py", "controlplane/client/_health_sync.py")


class UnasyncBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "unasync"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if GENERATOR.exists():
            spec = importlib.util.spec_from_file_location("controlplane_unasync", GENERATOR)
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # its dataclasses look themselves up there
            spec.loader.exec_module(module)
            module.generate(HERE / "controlplane" / "client")
        missing = [path for path in GENERATED if not (HERE / path).exists()]
        if missing:
            raise RuntimeError(
                f"{', '.join(missing)} missing and tools/unasync.py not found to make them"
            )
        # Ignored by git, so hatch would leave them out of the wheel unless told.
        for path in GENERATED:
            build_data["force_include"][str(HERE / path)] = path
