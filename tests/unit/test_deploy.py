"""deploy/: the Kubernetes base renders and every object validates against the
Kubernetes schemas; it runs the agent the way the docs promise (non-root, read-only
root filesystem, gRPC probes, a drain before stop); the systemd unit starts an
agent with flags the CLI accepts."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from controlplane.cli import build_parser
from tools.kustomize import KustomizeError, render

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes"
UNIT = ROOT / "deploy" / "systemd" / "controlplane.service"
# The oldest Kubernetes the base is written for: the sleep preStop action is beta
# (on by default) from 1.30.
KUBERNETES_VERSION = "1.30"


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in render(BASE)}


def test_every_object_validates_against_the_kubernetes_schemas(
    objects: dict[str, dict[str, Any]],
) -> None:
    assert set(objects) == {
        "ServiceAccount/controlplane",
        "Service/controlplane-peers",
        "Service/controlplane",
        "StatefulSet/controlplane",
        "PodDisruptionBudget/controlplane",
    }
    for name, document in objects.items():
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {error.message} at {'.'.join(map(str, error.path))}")


def test_an_invalid_object_is_refused() -> None:
    # The validator is not a formality: a misspelt field fails strict validation.
    broken = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 7946, "protocoll": "TCP"}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_agents_run_locked_down_with_grpc_probes(objects: dict[str, dict[str, Any]]) -> None:
    statefulset = objects["StatefulSet/controlplane"]
    pod = statefulset["spec"]["template"]["spec"]
    (agent,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True
    assert agent["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert agent["readinessProbe"]["grpc"] == {
        "port": 7946,
        "service": "controlplane.v1.Membership",
    }
    assert agent["livenessProbe"]["grpc"] == {"port": 7946}
    assert "preStop" in agent["lifecycle"]
    assert agent["resources"]["requests"]["memory"]
    # Labels reach the selectors and the pod template (kustomize's includeSelectors).
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert objects["Service/controlplane"]["spec"]["selector"].items() <= labels.items()
    pdb = objects["PodDisruptionBudget/controlplane"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_agents_args_are_flags_the_agent_accepts(objects: dict[str, dict[str, Any]]) -> None:
    (agent,) = objects["StatefulSet/controlplane"]["spec"]["template"]["spec"]["containers"]
    # The image's entrypoint is `controlplane agent`; $(VAR)s are Kubernetes' to fill.
    args = [
        arg.replace("$(POD_IP)", "10.1.2.3").replace("$(POD_NAME)", "controlplane-0")
        for arg in agent["args"]
    ]
    parsed = build_parser().parse_args(["agent", *args])
    assert parsed.join == ["controlplane-peers"]
    assert parsed.metrics_addr == "0.0.0.0:9464"
    peers = objects["Service/controlplane-peers"]["spec"]
    assert peers["clusterIP"] == "None"
    assert peers["publishNotReadyAddresses"] is True  # joins before readiness


def test_the_renderer_refuses_what_it_does_not_know(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches: []\n")
    with pytest.raises(KustomizeError, match="patches not supported"):
        render(tmp_path)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_renders_the_same_objects() -> None:
    output = subprocess.run(
        ["kubectl", "kustomize", str(BASE)], check=True, capture_output=True, text=True
    ).stdout
    rendered = [d for d in yaml.safe_load_all(output) if d]
    assert {(d["kind"], d["metadata"]["name"]) for d in rendered} == {
        (d["kind"], d["metadata"]["name"]) for d in render(BASE)
    }


def test_the_systemd_unit_starts_an_agent_the_cli_accepts() -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[:2] == ["/opt/controlplane/bin/controlplane", "agent"]
    parsed = build_parser().parse_args(command[1:])
    assert parsed.config == "/etc/controlplane/agent.toml"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["RestartPreventExitStatus"] == "2"
    assert int(service["TimeoutStopSec"]) > 2 + 5  # drain_period + shutdown_grace
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    # The executable need not exist for the syntax check; point it somewhere that does.
    text = UNIT.read_text().replace("/opt/controlplane/bin/controlplane", "/bin/true")
    (tmp_path / "controlplane.service").write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "controlplane.service")],
        capture_output=True,
        text=True,
    )
    assert "controlplane.service:" not in result.stderr, result.stderr
