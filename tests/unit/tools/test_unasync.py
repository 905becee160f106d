"""tools/unasync.py: the blocking client is generated from the asyncio one, and a
drifted copy fails `check` (which `make lint` runs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools import unasync


@pytest.fixture
def client_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "client"
    shutil.copytree(unasync.CLIENT, copy)
    monkeypatch.setattr(unasync, "CLIENT", copy)
    monkeypatch.setattr(unasync, "ROOT", tmp_path)
    shutil.copy(Path(unasync.__file__).resolve().parents[1] / "pyproject.toml", tmp_path)
    return copy


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("async def f(self) -> None:\n    await g()\n", "def f(self) -> None:\n    g()\n"),
        ("    async for x in self._watch:\n", "    for x in self._watch:\n"),
        ("    async with AsyncClient(a) as c:\n", "    with Client(a) as c:\n"),
        ("    return (await self._unary(m)).member\n", "    return self._unary(m).member\n"),
        ("    answers.append(await self._ping(s))\n", "    answers.append(self._ping(s))\n"),
        ("x: Callable[[_Stubs, float], Awaitable[T]]\n", "x: Callable[[_Stubs, float], T]\n"),
        ("def __aiter__(self) -> AsyncIterator[U]:\n", "def __iter__(self) -> Iterator[U]:\n"),
        ("    raise StopAsyncIteration\n", "    raise StopIteration\n"),
        (
            "from controlplane.client._async_backend import Event\n",
            "from controlplane.client._sync_backend import Event\n",
        ),
        ("channel: grpc.aio.Channel\n", "channel: grpc.Channel\n"),
        ("AsyncClientOptions\n", "AsyncClientOptions\n"),
    ],
)
def test_rules(source: str, expected: str) -> None:
    assert unasync.unasync(source, '"""doc"""') == expected


def test_the_blocking_client_in_the_tree_is_what_the_generator_makes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert unasync.check() == 0, capsys.readouterr().err


def test_an_edited_generated_file_fails_the_check_naming_it(
    client_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sync = client_copy / "sync.py"
    sync.write_text(
        sync.read_text().replace("MAX_CUTOFFS_IN_A_ROW = 8", "MAX_CUTOFFS_IN_A_ROW = 9")
    )
    assert unasync.check() == 1
    assert "client/sync.py differs from what tools/unasync.py generates" in capsys.readouterr().err


def test_an_edited_source_fails_the_check_until_generated_again(client_copy: Path) -> None:
    source = client_copy / "aio.py"
    source.write_text(
        source.read_text().replace("RESUBSCRIBE_PAUSE = 0.05", "RESUBSCRIBE_PAUSE = 0.1")
    )
    assert unasync.check() == 1
    assert unasync.generate() == 0
    assert "RESUBSCRIBE_PAUSE = 0.1" in (client_copy / "sync.py").read_text()
    assert unasync.check() == 0


def test_generate_is_idempotent(client_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert unasync.generate() == 0
    first = {rule.target: (client_copy / rule.target).read_text() for rule in unasync.RULES}
    capsys.readouterr()
    assert unasync.generate() == 0
    assert "wrote" not in capsys.readouterr().out
    assert {rule.target: (client_copy / rule.target).read_text() for rule in unasync.RULES} == (
        first
    )
    assert unasync.check() == 0


def test_the_generated_files_are_ruff_clean() -> None:
    assert unasync._ruff() is not None, "ruff is a development requirement"
    for rule in unasync.RULES:
        text = unasync.render(rule, unasync.CLIENT)
        assert unasync.ruff_problems(text, unasync.CLIENT / rule.target) is None, rule.target


def test_a_source_that_generates_unformatted_output_fails_the_check(
    client_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without its magic trailing comma this call fits on one line once `await` is gone.
    source = client_copy / "aio.py"
    text = source.read_text()
    indent = " " * 16
    exploded = f"{indent}self._stubs(server.address).channel,\n{indent}timeout=PING_TIMEOUT,\n"
    assert exploded in text
    joined = f"{indent}self._stubs(server.address).channel, timeout=PING_TIMEOUT\n"
    source.write_text(text.replace(exploded, joined))
    assert unasync.generate() == 0
    capsys.readouterr()
    assert unasync.check() == 1
    assert "client/sync.py as generated from aio.py is not ruff-clean" in capsys.readouterr().err
