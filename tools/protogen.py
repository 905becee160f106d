"""Generates the Python code of every .proto under protos/, or checks it for drift.

Public API protos (controlplane/v1) are generated into the client distribution
(clients/python); the gossip wire format (controlplane/gossip/v1) belongs to the
agent and is generated into the repository root. The public API is also written
as one descriptor set with its imports and its source information (the comments
of the .proto files), which the agent's reflection service serves, so that
`grpcurl describe` shows what each method and field means. `check` regenerates
into a temporary tree and fails on any difference, including stale generated files.
"""

from __future__ import annotations

import argparse
import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
# proto package directory -> output root (relative to the repository)
TARGETS: dict[str, str] = {
    "controlplane/v1": "clients/python",
    "controlplane/gossip/v1": ".",
}
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
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
        target = out_root / output
        target.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={target}",
            *(str(p) for p in protos),
        ]
        _protoc(command, package_dir)
        produced.append(target.relative_to(out_root))
    for package_dir, output in TARGETS.items():
        protos = sorted((PROTO_ROOT / package_dir).glob("*.proto"))
        if not protos:
            continue
        out = out_root / output
        out.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--mypy_out={out}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            f"--mypy_grpc_out={out}",
            *(str(p) for p in protos),
        ]
        _protoc(command, package_dir)
        produced.extend(
            path.relative_to(out_root)
            for path in (out / package_dir).iterdir()
            if path.name.endswith(GENERATED_SUFFIXES)
        )
    return sorted(produced)


def committed_files() -> list[Path]:
    found: list[Path] = []
    for package_dir, output in TARGETS.items():
        directory = ROOT / output / package_dir
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
    for package_dir, output in TARGETS.items():
        init = ROOT / output / package_dir / "__init__.py"
        if init.parent.is_dir() and not init.exists():
            init.write_text('"""Generated protobuf and gRPC code; never edited by hand."""\n')
    print(f"protogen: wrote {len(produced)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
