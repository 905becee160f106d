"""Every shell, Python and JavaScript block of README.md and docs/ runs, so the docs
cannot rot.

The convention (README.md, "Development", says the same):

- A fenced block tagged ``sh``, ``shell``, ``bash``, ``console``, ``python``, ``py``
  or ``js`` is run. Other tags (``go``, ``java``, ``yaml``, ``toml``...) and untagged
  blocks are shown text; an untagged block that starts with ``$ `` is refused, since
  it looks like commands that should run.
- A block that is not meant to run (it installs packages, needs Docker, takes
  minutes, is a sketch with placeholders) has the line
  ``<!-- docs-test: skip REASON -->`` right before its fence; the reason is required.
- A shell block whose first line starts with ``$ `` is a transcript: each ``$ ``
  line (continued by a trailing ``\\``) runs, and what it prints (stdout and stderr,
  in order) must match the lines below it, up to the next ``$ ``, ``#`` or blank
  line. ``...`` in the expected text matches anything and runs of whitespace compare
  equal (doctest's ELLIPSIS and NORMALIZE_WHITESPACE). Exit statuses are not checked,
  so a transcript can show an error. A command with no lines below it only has to
  exit 0. Any other shell block runs as one ``bash -euo pipefail`` script that must
  exit 0.
- Python blocks run with the repository's ``.venv/bin/python``; JavaScript blocks
  with ``node``, with the interop tests' ``node_modules`` on ``NODE_PATH``; both
  must exit 0.
- The blocks of one document run in order, in one scratch directory that mirrors
  the repository root (symlinks), against one fresh agent started as ``make run``
  starts it but on a free port: every ``7946`` in a block is replaced by that port
  and ``CONTROLPLANE_ADDR`` names it. ``.venv/bin`` is not on ``PATH``, so a
  block that calls ``controlplane`` by name fails, as it would for a reader who did
  not activate the environment.
"""

from __future__ import annotations

import doctest
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane.testing.agents import AgentProcess, clean_environment, free_port
from tests.ci import in_ci

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
SHELL = {"sh", "shell", "bash", "console"}
PYTHON = {"python", "py"}
JAVASCRIPT = {"js", "javascript"}
RUNNABLE = SHELL | PYTHON | JAVASCRIPT
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b\s*(?P<reason>.*?)\s*-->")
MARKER = re.compile(r"<!--\s*docs-test\b")  # a line that starts with it is a marker
FENCE = re.compile(r"^(?P<indent> *)```(?P<tag>[\w+-]*)\s*$")
DOC_PORT = "7946"
COMMAND_TIMEOUT = 60.0
NODE_MODULES = ROOT / "tests" / "interop" / "node" / "node_modules"
CHECKER = doctest.OutputChecker()
CHECK_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass(frozen=True)
class Block:
    document: Path
    line: int  # 1-based line of the opening fence
    tag: str
    text: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.tag in RUNNABLE and self.skip_reason is None


def blocks(document: Path) -> list[Block]:
    """The fenced blocks of a Markdown document, with the skip marker before each."""
    lines = document.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = len(opening["indent"])
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        body = "\n".join(line[indent:] for line in lines[index + 1 : end])
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = SKIP.match(previous.strip())
        found.append(
            Block(
                document,
                index + 1,
                opening["tag"].lower(),
                body + "\n",
                marker["reason"] if marker else None,
            )
        )
        index = end + 1
    return found


def markers_without_block(document: Path) -> list[int]:
    """Lines of docs-test markers that are not right before a fence."""
    lines = document.read_text().splitlines()
    orphans = []
    for number, line in enumerate(lines):
        if not MARKER.match(line.strip()):
            continue  # not a marker, or one quoted in text
        following = next((lines[i] for i in range(number + 1, len(lines)) if lines[i].strip()), "")
        if SKIP.search(line) is None or FENCE.match(following) is None:
            orphans.append(number + 1)
    return orphans


# ------------------------------------------------------------------ the rules


def test_every_block_runs_or_says_why_not() -> None:
    problems = []
    for document in DOCUMENTS:
        for block in blocks(document):
            if block.skip_reason is not None and not block.skip_reason:
                problems.append(f"{block.where}: a skip marker needs a reason")
            if block.skip_reason is not None and block.tag not in RUNNABLE:
                problems.append(f"{block.where}: skip marker on a block that never runs")
            if not block.tag and block.text.lstrip().startswith("$ "):
                problems.append(f"{block.where}: commands in an untagged block; tag it sh")
        problems.extend(
            f"{document.relative_to(ROOT)}:{line}: docs-test marker not right before a block"
            for line in markers_without_block(document)
        )
    assert not problems, "\n".join(problems)


def test_the_readme_walk_through_runs() -> None:
    """The README's first steps are commands that run, not a synopsis."""
    readme = [block for block in blocks(ROOT / "README.md") if block.runs]
    shell = "".join(block.text for block in readme if block.tag in SHELL)
    assert ".venv/bin/controlplane members" in shell
    assert ".venv/bin/controlplane --version" in shell
    assert any(block.tag in PYTHON for block in readme)


def test_the_parser_honours_markers(tmp_path: Path) -> None:
    document = tmp_path / "doc.md"
    document.write_text(
        "text\n\n<!-- docs-test: skip needs Docker -->\n```sh\ndocker ps\n```\n\n"
        "```python\nprint(1)\n```\n\n```\n$ ls\n```\n"
    )
    skipped, python, untagged = blocks(document)
    assert (skipped.skip_reason, skipped.runs) == ("needs Docker", False)
    assert (python.tag, python.runs, python.text) == ("python", True, "print(1)\n")
    assert (untagged.tag, untagged.runs) == ("", False)
    assert markers_without_block(document) == []
    document.write_text("<!-- docs-test: skip nothing follows -->\ntext\n")
    assert markers_without_block(document) == [1]


def test_transcripts_compare_output() -> None:
    commands = transcript("$ echo a \\\n  b\na b\n# comment\n$ true\n\n$ echo x\n...\n")
    assert commands == [("echo a \\\n  b", "a b\n"), ("true", ""), ("echo x", "...\n")]
    assert CHECKER.check_output("vm  127.0.0.1:1  alive\n", "vm 127.0.0.1:1 alive\n", CHECK_FLAGS)
    assert CHECKER.check_output("...  127.0.0.1:1  alive\n", "a  127.0.0.1:1  alive\n", CHECK_FLAGS)
    assert not CHECKER.check_output("b\n", "a\n", CHECK_FLAGS)


# ------------------------------------------------------------------ running


def transcript(text: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a `$ ` transcript."""
    pairs: list[tuple[str, str]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("$ "):
            index += 1  # a comment or a blank line between commands
            continue
        command = [line[2:]]
        while command[-1].endswith("\\") and index + 1 < len(lines):
            index += 1
            command.append(lines[index])
        index += 1
        expected = []
        while (
            index < len(lines) and lines[index].strip() and not lines[index].startswith(("$ ", "#"))
        ):
            expected.append(lines[index])
            index += 1
        pairs.append(("\n".join(command), "".join(f"{e}\n" for e in expected)))
    return pairs


@dataclass
class Scratch:
    """Where a document's blocks run: a mirror of the repository root and an agent."""

    directory: Path
    agent: AgentProcess

    @property
    def port(self) -> str:
        return str(self.agent.port)

    def env(self) -> dict[str, str]:
        venv_bin = str(ROOT / ".venv" / "bin")
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin]
        env = clean_environment({"CONTROLPLANE_ADDR": self.agent.target})
        env["PATH"] = os.pathsep.join(path)
        env.pop("VIRTUAL_ENV", None)
        env["NODE_PATH"] = str(NODE_MODULES)
        return env

    def run(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            input=stdin,
            cwd=self.directory,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def shell(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.directory,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )


def run_block(block: Block, scratch: Scratch) -> None:
    text = block.text.replace(DOC_PORT, scratch.port)
    if block.tag in SHELL and text.lstrip().startswith("$ "):
        for command, expected in transcript(text):
            result = scratch.shell(command)
            if not expected:
                assert result.returncode == 0, f"{block.where}: $ {command}\n{result.stdout}"
            elif not CHECKER.check_output(expected, result.stdout, CHECK_FLAGS):
                pytest.fail(
                    f"{block.where}: $ {command}\nexpected:\n{expected}got:\n{result.stdout}"
                )
        return
    if block.tag in SHELL:
        result = scratch.shell(text)
        assert result.returncode == 0, f"{block.where}:\n{text}\n{result.stdout}"
        return
    if block.tag in PYTHON:
        result = scratch.run([str(ROOT / ".venv" / "bin" / "python"), "-"], stdin=text)
    else:
        if shutil.which("node") is None or not NODE_MODULES.is_dir():
            if in_ci():
                pytest.fail(f"{block.where}: node and tests/interop/node/node_modules are needed")
            pytest.skip("node or tests/interop/node/node_modules is missing (make node-deps)")
        script = scratch.directory / f"block-{block.line}.js"
        script.write_text(text)
        result = scratch.run(["node", str(script)])
    assert result.returncode == 0, f"{block.where}:\n{result.stdout}{result.stderr}"


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Scratch]:
    directory = tmp_path / "repo"
    directory.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in (".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"):
            (directory / entry.name).symlink_to(entry)
    agent = make_run_agent(tmp_path)
    try:
        yield Scratch(directory, agent)
    finally:
        agent.kill()


def make_run_agent(log_dir: Path) -> AgentProcess:
    """An agent started the way `make run` starts one (the host name as its node
    name, the default profile), on a free port instead of 7946."""
    port = free_port()
    log_path = log_dir / "agent.log"
    command = [
        str(ROOT / ".venv" / "bin" / "controlplane"),
        *("agent", "--bind", "127.0.0.1", "--port", str(port)),
        *("--drain-period", "0", "--shutdown-grace", "1"),
    ]
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, text=True, env=clean_environment()
        )
    agent = AgentProcess("make-run", "127.0.0.1", port, process, log_path)
    try:
        agent.wait_serving()
    except BaseException:
        agent.kill()
        raise
    return agent


RUN_DOCUMENTS = [doc for doc in DOCUMENTS if any(block.runs for block in blocks(doc))]


@pytest.mark.parametrize(
    "document", RUN_DOCUMENTS, ids=[str(doc.relative_to(ROOT)) for doc in RUN_DOCUMENTS]
)
def test_document_blocks_run(document: Path, scratch: Scratch) -> None:
    for block in blocks(document):
        if block.runs:
            run_block(block, scratch)
