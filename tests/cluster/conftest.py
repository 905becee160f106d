"""Fixtures of the cluster tier: a Docker engine, the project image, clusters.

The engine comes from scripts/docker-engine.sh and the images from
scripts/build-images.sh. When no engine can be had (the start script fails), the
tier is skipped with the script's reason, except in CI (`CI=true`), where that is
a failure. Only an engine that this session started is stopped at the end.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.ci import in_ci
from tests.cluster.harness import Cluster

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import docker
import docker.errors

ROOT = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = ROOT / "scripts" / "docker-engine.sh"
BUILD_SCRIPT = ROOT / "scripts" / "build-images.sh"
ENGINE_START_TIMEOUT = 300.0  # includes installing docker.io on a fresh machine
BUILD_TIMEOUT = 600.0  # the first debootstrap takes about a minute

CLUSTER_DIR = Path(__file__).resolve().parent


def unavailable(reason: str) -> None:
    """Skips locally; fails in CI, where the cluster tier must run."""
    if in_ci():
        pytest.fail(f"cluster tier cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"cluster tier skipped: {reason}")


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if CLUSTER_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A Docker engine: the one that answers already, or one the script starts
    (and that this session then stops)."""
    if not ENGINE_SCRIPT.exists():
        unavailable(f"{ENGINE_SCRIPT} is missing")
    env = {**os.environ}
    try:
        status = subprocess.run(
            [str(ENGINE_SCRIPT), "status"], capture_output=True, text=True, timeout=60, env=env
        )
        answered_before = status.returncode == 0
        started = subprocess.run(
            [str(ENGINE_SCRIPT), "start"],
            capture_output=True,
            text=True,
            timeout=ENGINE_START_TIMEOUT,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        unavailable(f"scripts/docker-engine.sh start: {error}")
        raise AssertionError("unreachable") from error
    if started.returncode != 0:
        unavailable(
            f"scripts/docker-engine.sh start exited {started.returncode}: "
            f"{_tail(started.stderr or started.stdout)}"
        )
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as error:
        unavailable(f"the engine does not answer the Docker API: {error}")
        raise AssertionError("unreachable") from error
    try:
        yield client
    finally:
        client.close()
        if not answered_before:
            subprocess.run([str(ENGINE_SCRIPT), "stop"], capture_output=True, timeout=120, env=env)


@pytest.fixture(scope="session")
def agent_image(docker_client: docker.DockerClient) -> str:
    """The project image, built (or found in the content-addressed cache) once per session."""
    try:
        built = subprocess.run(
            [str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=BUILD_TIMEOUT, cwd=ROOT
        )
    except subprocess.TimeoutExpired as error:
        unavailable(f"scripts/build-images.sh took more than {BUILD_TIMEOUT:.0f} s")
        raise AssertionError("unreachable") from error
    if built.returncode != 0:
        unavailable(f"scripts/build-images.sh exited {built.returncode}: {_tail(built.stderr)}")
    images = [
        line.split("=", 1)[1] for line in built.stdout.splitlines() if line.startswith("IMAGE=")
    ]
    if not images:
        pytest.fail(f"scripts/build-images.sh printed no IMAGE= line: {_tail(built.stdout)}")
    docker_client.images.get(images[-1])
    return images[-1]


ClusterFactory = Callable[..., Cluster]


@pytest.fixture
def make_cluster(
    request: pytest.FixtureRequest, docker_client: docker.DockerClient, agent_image: str
) -> Iterator[ClusterFactory]:
    """Makes started clusters; removes their containers and networks afterwards,
    printing the agents' logs when the test failed."""
    clusters: list[Cluster] = []

    def make(
        size: int,
        extra_args: Callable[[int, str], Sequence[str]] | None = None,
        shared_alias: str | None = None,
    ) -> Cluster:
        cluster = Cluster(
            docker_client, agent_image, size, extra_args=extra_args, shared_alias=shared_alias
        )
        clusters.append(cluster)
        elapsed = cluster.start(timeout=60.0)
        print(f"\n{size} agents converged in {elapsed:.1f} s on {cluster.subnet}")
        return cluster

    try:
        yield make
    finally:
        report = getattr(request.node, "report_call", None)
        failed = report is None or report.failed
        errors: list[BaseException] = []
        for cluster in clusters:
            if failed:
                print(f"\n===== agent logs ({cluster.network.name}) =====\n{cluster.logs()}")
            try:
                cluster.close()
            except Exception as error:  # keep closing the others
                errors.append(error)
        if errors:
            raise errors[0]
