"""api/servicers.py: each public service is a real subclass of its generated base
that serves every RPC itself, and registration guards each method exactly once."""

from __future__ import annotations

from typing import Any, cast

import pytest

from controlplane.api import servicers
from controlplane.api.errors import guarded_parts
from controlplane.api.services import PUBLIC_SERVICES, PublicService
from tests.unit.api.fake_server import RecordingServer

CLASSES = {
    "Membership": servicers.MembershipServicer,
    "ServerPool": servicers.ServerPoolServicer,
    "Ring": servicers.RingServicer,
    "Keyring": servicers.KeyringServicer,
}


@pytest.mark.parametrize("service", PUBLIC_SERVICES, ids=lambda s: s.name)
def test_every_rpc_is_served_by_the_servicer_itself(service: PublicService) -> None:
    cls = CLASSES[service.name]
    assert issubclass(cls, service.servicer_base)
    missing = [name for name in service.method_names if name not in vars(cls)]
    assert missing == [], f"{cls.__name__} leaves {missing} to the base's UNIMPLEMENTED"


@pytest.mark.parametrize("service", PUBLIC_SERVICES, ids=lambda s: s.name)
def test_registration_guards_each_method_once_around_the_servicers_own(
    service: PublicService,
) -> None:
    # Registration reads the methods only: no components are needed.
    servicer = object.__new__(cast(Any, CLASSES[service.name]))
    server = RecordingServer()
    service.add_to_server(servicer, cast(Any, server), None)
    handlers = {name: server.handler(service.full_name, name) for name in service.method_names}
    assert None not in handlers.values()
    for name, handler in handlers.items():
        function = handler.unary_unary or handler.unary_stream
        parts = guarded_parts(function)
        assert parts is not None, name
        behavior, _check = parts
        # The servicer's own bound method: no second guard, no other wrapper.
        assert getattr(behavior, "__func__", None) is vars(CLASSES[service.name])[name], name
