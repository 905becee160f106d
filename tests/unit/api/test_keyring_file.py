"""The keyring file and a keyring change that cannot be stored.

A change is written to the file before the keyring in memory changes: a failed
write fails the RPC on the coordinator, is reported in the reply of any other
member, and leaves every keyring as it was."""

from __future__ import annotations

import base64
import errno
import json
from pathlib import Path
from typing import Any

import pytest

from controlplane.api.keyring import KeyringFile, KeyringService
from controlplane.configerror import ConfigError
from controlplane.errors import ResourceExhausted, Unavailable
from controlplane.gossip import Keyring
from controlplane.membership import ChannelDelivery, MemberStatus
from controlplane.v1 import keyring_pb2 as pb
from controlplane.wire.v1 import keyring_pb2 as wire

OLD = bytes(range(32))
NEW = bytes(range(100, 132))
CONTEXT: Any = None


class Member:
    name = "local"
    status = MemberStatus.ALIVE


class FakeLayer:
    name = "local"

    def members(self) -> list[Member]:
        return [Member()]


class FailingFile(KeyringFile):
    failure: OSError | None = None

    def save(self, keys: Any) -> None:
        if self.failure is not None:
            raise self.failure
        super().save(keys)


def service(tmp_path: Path, sent: list[bytes]) -> tuple[KeyringService, Keyring, FailingFile]:
    keyring = Keyring([OLD])
    store = FailingFile(str(tmp_path))
    store.save([OLD])
    keys = KeyringService(
        FakeLayer(),  # type: ignore[arg-type]
        lambda channel, payload: sent.append(payload),
        keyring,
        store,
    )
    return keys, keyring, store


async def test_a_failed_write_fails_the_rpc_and_changes_nothing(tmp_path: Path) -> None:
    sent: list[bytes] = []
    keys, keyring, store = service(tmp_path, sent)
    store.failure = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(ResourceExhausted, match="the key was not installed on local: cannot"):
        await keys.InstallKey(pb.InstallKeyRequest(key=NEW), CONTEXT)
    store.failure = None
    await keys.InstallKey(pb.InstallKeyRequest(key=NEW), CONTEXT)
    store.failure = OSError(errno.EROFS, "Read-only file system")
    with pytest.raises(Unavailable, match="the primary key was not changed on local"):
        await keys.UseKey(pb.UseKeyRequest(key=NEW), CONTEXT)
    assert keyring.keys == [OLD, NEW]
    assert [base64.b64decode(k) for k in json.loads(store.path.read_text())] == [OLD, NEW]
    assert sent == []  # nothing asked of other members


def test_a_member_that_cannot_store_a_change_reports_it_and_keeps_its_keys(
    tmp_path: Path,
) -> None:
    sent: list[bytes] = []
    keys, keyring, store = service(tmp_path, sent)
    store.failure = OSError(errno.ENOSPC, "No space left on device")
    request = wire.KeyringRequest(
        id=7, coordinator="other", operation=wire.KEYRING_OPERATION_INSTALL, key=NEW
    )
    payload = wire.KeyringMessage(request=request).SerializeToString()
    keys.on_channel(ChannelDelivery("keyring", "other", payload))
    reply = wire.KeyringMessage.FromString(sent[0]).reply
    assert "the key was not installed on local" in reply.error
    assert "No space left on device" in reply.error
    assert list(reply.keys) == [OLD]
    assert keyring.keys == [OLD]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x00\xff", "is not a JSON list of base64 keys"),
        (b"[]", "holds no keys"),
        (b"[1, 2]", "is not a JSON list of base64 keys"),
        (json.dumps(["@@"]).encode(), "key 1 is not valid base64"),
        (json.dumps([base64.b64encode(b"x" * 7).decode()]).encode(), "key 1 is 7 bytes"),
        (json.dumps([base64.b64encode(OLD).decode()] * 2).encode(), "key 2 is listed twice"),
        (b" " * (KeyringFile.MAX_BYTES + 1), "is larger than"),
    ],
)
def test_a_damaged_file_is_an_error_naming_it(tmp_path: Path, content: bytes, problem: str) -> None:
    store = KeyringFile(str(tmp_path))
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(content)
    with pytest.raises(ConfigError, match=problem) as refused:
        store.load()
    assert str(store.path) in str(refused.value)


def test_a_missing_file_is_no_keyring_and_a_saved_one_reads_back(tmp_path: Path) -> None:
    store = KeyringFile(str(tmp_path))
    assert store.load() is None
    store.save([NEW, OLD])
    assert store.load() == [NEW, OLD]
    assert store.path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
def test_a_deeply_nested_keyring_file_is_refused_as_a_bad_file(
    tmp_path: Path, opening: bytes
) -> None:
    from controlplane.api.keyring import KeyringFile
    from controlplane.configerror import ConfigError

    # Deeper than json's recursion limit, far under KeyringFile.MAX_BYTES.
    keyring = KeyringFile(str(tmp_path))
    keyring.path.parent.mkdir(parents=True)
    keyring.path.write_bytes(opening * 100_000)
    with pytest.raises(ConfigError, match="not a JSON list of base64 keys"):
        keyring.load()
