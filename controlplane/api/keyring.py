"""The Keyring service: gossip encryption keys managed cluster-wide, as Serf's
`keys` commands do.

The agent that receives an RPC applies the operation to its own keyring, asks
every member to do the same over the gossip "keyring" channel, and collects one
reply per member until every alive member has answered or the wait runs out; the
answer counts the members asked, those that replied, and the errors reported.
Keyring changes are kept in `<data_dir>/serf/local.keyring` (base64 keys,
primary first, like Serf's keyring file) so a restarted agent keeps them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc.aio

from controlplane.configerror import ConfigError
from controlplane.datadir import atomic_write, write_failure
from controlplane.errors import ControlPlaneError, FailedPrecondition, InvalidArgument
from controlplane.gossip import Keyring, codec
from controlplane.gossip.keyring import VALID_KEY_SIZES
from controlplane.membership import ChannelDelivery, ChannelStateReceived, Membership, MemberStatus
from controlplane.v1 import keyring_pb2 as pb
from controlplane.wire.v1 import keyring_pb2 as wire

log = logging.getLogger("controlplane.keyring")

CHANNEL = "keyring"
# How long to wait for replies: a few gossip rounds across a large cluster (Serf
# scales its query timeout the same way: GossipInterval x 16 x log(N+1)).
MIN_REPLY_WAIT = 2.0
MAX_REPLY_WAIT = 15.0
# How often a request is sent again while members have not answered.
RESEND_INTERVAL = 1.0
# What a failed keyring-file write left undone, by operation.
NOT_DONE: dict[int, str] = {
    wire.KEYRING_OPERATION_INSTALL: "the key was not installed",
    wire.KEYRING_OPERATION_USE: "the primary key was not changed",
    wire.KEYRING_OPERATION_REMOVE: "the key was not removed",
}


def check_key(key: bytes) -> bytes:
    if len(key) not in VALID_KEY_SIZES:
        raise InvalidArgument.for_field(
            "key", f"must be 16, 24 or 32 bytes (AES-128/192/256), got {len(key)}"
        )
    return key


def apply_operation(keyring: Keyring, operation: int, key: bytes) -> str:
    """Applies one operation; returns the error to report, or "" on success."""
    try:
        if operation == wire.KEYRING_OPERATION_INSTALL:
            keyring.add_key(key)
        elif operation == wire.KEYRING_OPERATION_USE:
            if key not in keyring.keys:
                return "the key is not installed; install it first"
            keyring.use_key(key)
        elif operation == wire.KEYRING_OPERATION_REMOVE:
            if key == keyring.primary_key:
                return "the primary key cannot be removed; use another key first"
            if key in keyring.keys:
                keyring.remove_key(key)
        elif operation != wire.KEYRING_OPERATION_LIST:
            return f"unknown keyring operation {operation}"
    except ValueError as error:
        return str(error)
    return ""


class KeyringFile:
    """Serf's keyring file: a JSON list of base64 keys, the primary first.

    A file that exists but cannot be read or holds anything but valid keys raises
    ConfigError: the agent must not start with other keys than the ones the
    operator rotated to, nor without encryption, nor overwrite what it could not
    read (Serf's loadKeyringFile refuses to start in the same cases)."""

    # A keyring of the largest keys holds about 45 bytes per key; anything near
    # this size is not a keyring, and is not read into memory whole.
    MAX_BYTES = 1 << 20

    def __init__(self, data_dir: str) -> None:
        self.path = Path(data_dir) / "serf" / "local.keyring"

    def _problem(self, what: str) -> ConfigError:
        return ConfigError(f"keyring file {str(self.path)!r} {what}")

    def load(self) -> list[bytes] | None:
        """The keys, primary first; None when there is no file."""
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read(self.MAX_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._problem(f"cannot be read: {error.strerror or error}") from None
        if len(raw) > self.MAX_BYTES:
            raise self._problem(f"is larger than {self.MAX_BYTES} bytes: not a keyring")
        try:
            encoded = json.loads(raw.decode("utf-8"))
        # RecursionError: nesting deeper than the interpreter's limit ("[[[[...").
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise self._problem(f"is not a JSON list of base64 keys: {error}") from None
        if not isinstance(encoded, list) or not all(isinstance(k, str) for k in encoded):
            raise self._problem("is not a JSON list of base64 keys")
        if not encoded:
            raise self._problem("holds no keys")
        keys: list[bytes] = []
        for index, item in enumerate(encoded, start=1):
            try:
                key = base64.b64decode(item, validate=True)
            except ValueError:
                raise self._problem(f"key {index} is not valid base64") from None
            if len(key) not in VALID_KEY_SIZES:
                raise self._problem(f"key {index} is {len(key)} bytes; keys are 16, 24 or 32 bytes")
            if key in keys:
                raise self._problem(f"key {index} is listed twice")
            keys.append(key)
        return keys

    def save(self, keys: Sequence[bytes]) -> None:
        """Replaces the file with `keys` (primary first); raises OSError on failure."""
        text = json.dumps([base64.b64encode(key).decode() for key in keys])
        atomic_write(self.path, text.encode(), mode=0o600)


@dataclass
class _Pending:
    expected: set[str]
    replies: dict[str, wire.KeyringReply] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class KeyringService:
    """controlplane.v1.Keyring over the agent's gossip keyring."""

    def __init__(
        self,
        layer: Membership,
        send: Callable[[str, bytes], None],
        keyring: Keyring | None,
        store: KeyringFile | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._layer = layer
        self._send = send
        self._keyring = keyring
        self._store = store
        self._rng = rng or random.Random()
        self._pending: dict[int, _Pending] = {}

    # ------------------------------------------------------------ gossip side

    def _apply(self, operation: int, key: bytes) -> str:
        """Applies one operation to this agent's keyring and keyring file; returns the
        error to report, or "" on success.

        The file is written before the keyring in memory changes, so a failed write
        (ControlPlaneError, naming the file) leaves both as they were: what this
        agent answers is what it would use after a restart."""
        assert self._keyring is not None
        if operation == wire.KEYRING_OPERATION_LIST:
            return apply_operation(self._keyring, operation, key)
        # The operation is tried on a copy first: its keys are what the file must hold.
        trial = Keyring(self._keyring.keys)
        error = apply_operation(trial, operation, key)
        if error or trial.keys == self._keyring.keys:
            return error
        if self._store is not None:
            try:
                self._store.save(trial.keys)
            except OSError as failure:
                raise write_failure(
                    f"{NOT_DONE[operation]} on {self._layer.name}", self._store.path, failure
                ) from None
        return apply_operation(self._keyring, operation, key)

    def _reply(self, request: wire.KeyringRequest) -> wire.KeyringReply:
        """Applies a member's request here; a failed write is reported in the reply,
        which the coordinator lists among the members' errors."""
        try:
            error = self._apply(request.operation, request.key)
        except ControlPlaneError as failure:
            log.error("keyring request from %s: %s", request.coordinator, failure)
            error = str(failure)
        return self._reply_for(request, error)

    def _reply_for(self, request: wire.KeyringRequest, error: str) -> wire.KeyringReply:
        assert self._keyring is not None
        return wire.KeyringReply(
            id=request.id,
            coordinator=request.coordinator,
            member=self._layer.name,
            error=error,
            keys=self._keyring.keys,
            primary_key=self._keyring.primary_key,
        )

    def on_channel(self, effect: ChannelDelivery | ChannelStateReceived) -> None:
        if not isinstance(effect, ChannelDelivery) or self._keyring is None:
            return
        message = codec.parse(wire.KeyringMessage, effect.payload)
        if message is None:  # foreign input
            return
        if message.HasField("request"):
            reply = self._reply(message.request)
            self._send(CHANNEL, wire.KeyringMessage(reply=reply).SerializeToString())
        elif message.HasField("reply") and message.reply.coordinator == self._layer.name:
            pending = self._pending.get(message.reply.id)
            if pending is not None and message.reply.member in pending.expected:
                pending.replies[message.reply.member] = message.reply
                if set(pending.replies) >= pending.expected:
                    pending.done.set()

    # ------------------------------------------------------------- RPC side

    async def _cluster_operation(
        self, operation: int, key: bytes
    ) -> tuple[pb.KeyringResult, list[wire.KeyringReply]]:
        if self._keyring is None:
            raise FailedPrecondition(
                "gossip encryption is off on this agent; start every agent with --encrypt KEY"
            )
        alive = {m.name for m in self._layer.members() if m.status is MemberStatus.ALIVE}
        request = wire.KeyringRequest(
            id=self._rng.getrandbits(64),
            coordinator=self._layer.name,
            operation=operation,  # type: ignore[arg-type]
            key=key,
        )
        pending = _Pending(expected=alive)
        # This agent first: if its own keyring file cannot be written, the RPC fails
        # with that error and nothing is asked of the other members.
        pending.replies[self._layer.name] = self._reply_for(request, self._apply(operation, key))
        others = alive - {self._layer.name}
        if others:
            self._pending[request.id] = pending
            loop = asyncio.get_running_loop()
            deadline = loop.time() + min(
                MAX_REPLY_WAIT, MIN_REPLY_WAIT * max(1, len(alive).bit_length())
            )
            payload = wire.KeyringMessage(request=request).SerializeToString()
            try:
                # Gossip delivers a broadcast with high probability, not certainty: a
                # reply's few transmissions may all go to other members. Until every
                # member has answered, ask again (operations are idempotent; replies
                # to the same request id merge), as Serf relays query responses.
                while not pending.done.is_set() and loop.time() < deadline:
                    self._send(CHANNEL, payload)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            pending.done.wait(), min(RESEND_INTERVAL, deadline - loop.time())
                        )
            finally:
                del self._pending[request.id]
        replies = list(pending.replies.values())
        result = pb.KeyringResult(
            num_nodes=len(alive),
            num_responses=len(replies),
            errors={r.member: r.error for r in replies if r.error},
        )
        return result, replies

    async def ListKeys(
        self, request: pb.ListKeysRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListKeysResponse:
        result, replies = await self._cluster_operation(wire.KEYRING_OPERATION_LIST, b"")
        holders: dict[bytes, list[int]] = {}
        for reply in replies:
            for key in reply.keys:
                counts = holders.setdefault(key, [0, 0])
                counts[0] += 1
                counts[1] += key == reply.primary_key
        keys = [
            pb.KeyStatus(key=key, members=counts[0], primary_members=counts[1])
            for key, counts in sorted(holders.items(), key=lambda item: -item[1][1])
        ]
        return pb.ListKeysResponse(result=result, keys=keys)

    async def InstallKey(
        self, request: pb.InstallKeyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.InstallKeyResponse:
        key = check_key(request.key)
        result, _ = await self._cluster_operation(wire.KEYRING_OPERATION_INSTALL, key)
        return pb.InstallKeyResponse(result=result)

    async def UseKey(
        self, request: pb.UseKeyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UseKeyResponse:
        key = check_key(request.key)
        result, _ = await self._cluster_operation(wire.KEYRING_OPERATION_USE, key)
        return pb.UseKeyResponse(result=result)

    async def RemoveKey(
        self, request: pb.RemoveKeyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RemoveKeyResponse:
        key = check_key(request.key)
        result, _ = await self._cluster_operation(wire.KEYRING_OPERATION_REMOVE, key)
        return pb.RemoveKeyResponse(result=result)
