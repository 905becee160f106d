"""Generates the Python code of every .proto under protos/, or checks it for drift.

Public API protos (controlplane/v1) are generated into the client distribution
(clients/python); the gossip wire format (protos/controlplane/gossip/v1, proto package
`controlplane.gossip.v1`) belongs to the agent and is generated into its own Python
package, `controlplane.wire.v1`, so that the generated gRPC code (which imports grpc)
stays out of the pure `controlplane.gossip` core. The proto package, and with it every
name on the wire (`/controlplane.gossip.v1.Gossip/PushPull`), is unchanged: protoc is
told that the directory protos/controlplane/gossip is `controlplane/wire`.

The public API is also written as one descriptor set with its imports and its
source information (the comments of the .proto files), which the agent's
reflection service serves, so that `grpcurl describe` shows what each method and
field means. `check` regenerates
into a temporary tree and fails on any difference, including stale generated files.
"""

from __future__ import annotations

import argparse
import filecmp
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


@dataclass(frozen=True)
class Target:
    """Where the .proto files of `proto_dir` go: Python package `package_dir` below
    `output` (both relative to the repository)."""

    proto_dir: str
    output: str
    package_dir: str

    def include(self) -> str:
        """The -I argument: the proto root, or a virtual=physical mapping that makes
        protoc see `proto_dir`'s parent as `package_dir`'s parent."""
        if self.package_dir == self.proto_dir:
            return f"-I{PROTO_ROOT}"
        virtual = self.package_dir.rsplit("/", 1)[0]
        physical = PROTO_ROOT / self.proto_dir.rsplit("/", 1)[0]
        return f"-I{virtual}={physical}"

    def sources(self) -> list[str]:
        """The .proto files, named as protoc sees them through `include()`."""
        protos = sorted((PROTO_ROOT / self.proto_dir).glob("*.proto"))
        if self.package_dir == self.proto_dir:
            return [str(p) for p in protos]
        return [f"{self.package_dir}/{p.name}" for p in protos]


TARGETS: tuple[Target, ...] = (
    Target("controlplane/v1", "clients/python", "controlplane/v1"),
    Target("controlplane/gossip/v1", ".", "controlplane/wire/v1"),
)
# proto package directory -> descriptor set (FileDescriptorSet with imports and comments)
DESCRIPTOR_SETS: dict[str, str] = {
    "controlplane/v1": "controlplane/api/descriptor_set.binpb",
}


def _plugin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"protogen: {name} not found next to {sys.executable}; run `make venv`")
    return str(path)


def _protoc(command: list[str], package_dir: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"protogen: protoc failed for {package_dir}: {result.stderr.strip()}")


def generate(out_root: Path) -> list[Path]:
    """Runs protoc for every target; returns the generated files (relative paths)."""
    produced: list[Path] = []
    for package_dir, output in DESCRIPTOR_SETS.items():
        protos = sorted((PROTO_ROOT / package_dir).glob("*.proto"))
        descriptor_set = out_root / output
        descriptor_set.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={descriptor_set}",
            *(str(p) for p in protos),
        ]
        _protoc(command, package_dir)
        produced.append(descriptor_set.relative_to(out_root))
    for target in TARGETS:
        sources = target.sources()
        if not sources:
            continue
        out = out_root / target.output
        out.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            target.include(),
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--mypy_out={out}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            f"--mypy_grpc_out={out}",
            *sources,
        ]
        _protoc(command, target.proto_dir)
        produced.extend(
            path.relative_to(out_root)
            for path in (out / target.package_dir).iterdir()
            if path.name.endswith(GENERATED_SUFFIXES)
        )
    return sorted(produced)


def committed_files() -> list[Path]:
    found: list[Path] = []
    for target in TARGETS:
        directory = ROOT / target.output / target.package_dir
        if directory.is_dir():
            found.extend(
                path.relative_to(ROOT)
                for path in directory.iterdir()
                if path.name.endswith(GENERATED_SUFFIXES)
            )
    found.extend(Path(output) for output in DESCRIPTOR_SETS.values() if (ROOT / output).exists())
    return sorted(found)


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        problems: list[str] = []
        committed = set(committed_files())
        for rel in fresh:
            if rel not in committed:
                problems.append(f"missing: {rel}")
            elif not filecmp.cmp(Path(tmp) / rel, ROOT / rel, shallow=False):
                problems.append(f"differs: {rel}")
        problems.extend(f"stale: {rel}" for rel in sorted(committed - set(fresh)))
    if problems:
        for line in problems:
            print(f"proto-check: {line}", file=sys.stderr)
        print("proto-check: generated code is out of date; run `make proto`", file=sys.stderr)
        return 1
    print(f"proto-check: {len(fresh)} generated files match protos/")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["generate", "check"])
    args = parser.parse_args()
    if args.command == "check":
        return check()
    for stale in committed_files():
        (ROOT / stale).unlink()
    produced = generate(ROOT)
    for target in TARGETS:
        init = ROOT / target.output / target.package_dir / "__init__.py"
        if init.parent.is_dir() and not init.exists():
            init.write_text('"""Generated protobuf and gRPC code; never edited by hand."""\n')
    print(f"protogen: wrote {len(produced)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
