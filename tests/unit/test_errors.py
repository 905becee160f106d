"""The error taxonomy (controlplane/errors.py): transport-neutral codes, mapped to
gRPC once at each edge, and the gRPC-speaking names kept for existing callers."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

from controlplane import errors
from controlplane.api.errors import status_of
from controlplane.client.status import error_code_of, error_from_status
from controlplane.errors import (
    ERRORS_BY_ERROR_CODE,
    ControlPlaneError,
    ErrorCode,
    FieldViolation,
    InvalidArgument,
)

# The pure cores and the taxonomy they raise must load without any transport.
NEUTRAL_MODULES = (
    "controlplane.errors",
    "controlplane.gossip",
    "controlplane.membership",
    "controlplane.election",
    "controlplane.rings.directory",
    "controlplane.heartbeat.tracker",
    "controlplane.pool",
    "controlplane.ring",
)

ALL_ERRORS = sorted(ERRORS_BY_ERROR_CODE.values(), key=lambda cls: cls.__name__)


@pytest.mark.parametrize("module", NEUTRAL_MODULES)
def test_importing_the_cores_and_the_taxonomy_does_not_import_grpc(module: str) -> None:
    probe = f"import sys, {module}; print(sorted(m for m in sys.modules if 'grpc' in m))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]", f"{module} imports {result.stdout.strip()}"


def test_every_canonical_code_has_the_number_and_name_of_grpcs() -> None:
    for code in ErrorCode:
        assert grpc.StatusCode[code.name].value[0] == code.value


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_code_is_still_the_grpc_status_code(cls: type[ControlPlaneError]) -> None:
    assert cls.code == grpc.StatusCode[cls.error_code.name]
    assert cls("x").code is cls.code
    assert errors.ERRORS_BY_CODE[cls.code] is cls


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_an_error_crosses_both_edges_as_itself(cls: type[ControlPlaneError]) -> None:
    sent = (
        InvalidArgument("ttl: too long", [FieldViolation("ttl", "too long")])
        if cls is InvalidArgument
        else cls("no such thing")
    )
    status = status_of(sent)
    assert status.code == grpc.StatusCode[cls.error_code.name]
    received = error_from_status(status.code, status.details, status.trailing_metadata)
    assert type(received) is cls
    assert received.error_code == sent.error_code
    if isinstance(received, InvalidArgument):
        assert received.violations == (FieldViolation("ttl", "too long"),)


def test_an_unknown_attribute_of_the_module_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NO_SUCH_TABLE"):
        _ = errors.NO_SUCH_TABLE


def test_grpc_is_imported_only_when_a_grpc_name_is_used() -> None:
    probe = (
        "import sys\n"
        "from controlplane.errors import NotFound\n"
        "before = 'grpc' in sys.modules\n"
        "from controlplane.errors import ERRORS_BY_CODE\n"
        "print(before, 'grpc' in sys.modules, ERRORS_BY_CODE[NotFound.code].__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False", "True", "NotFound"]


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda code: code.name)
def test_the_client_edge_maps_every_grpc_code(code: grpc.StatusCode) -> None:
    assert error_code_of(code).name == code.name
    received = error_from_status(code, "boom")
    expected = ERRORS_BY_ERROR_CODE.get(error_code_of(code), ControlPlaneError)
    assert type(received) is expected
    if expected is ControlPlaneError:
        assert received.message.endswith(f"[status {code.name}]")


def test_a_subclass_inherits_its_codes() -> None:
    class PoolGone(errors.NotFound):
        pass

    assert PoolGone.error_code is ErrorCode.NOT_FOUND
    assert PoolGone("x").code is grpc.StatusCode.NOT_FOUND
