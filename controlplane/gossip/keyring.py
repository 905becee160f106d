"""AES-GCM keyring: the primary key encrypts, every installed key decrypts (key rotation).

Keys are 16, 24 or 32 bytes (AES-128/192/256). Nonces come from an injected
callable so the core stays deterministic in simulation; production shells pass
``os.urandom`` (the default), never a seeded generator.

``cryptography`` is imported when the first key is installed, not with this
module: an agent without ``--encrypt`` never loads it (about 7 MB of memory).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_SIZE = 12
TAG_SIZE = 16
# Bytes an encrypted body adds to its plaintext.
ENCRYPTION_OVERHEAD = NONCE_SIZE + TAG_SIZE
VALID_KEY_SIZES = (16, 24, 32)

NonceSource = Callable[[int], bytes]


class DecryptionFailed(Exception):
    """No installed key authenticates the ciphertext (wrong key, label or tampering)."""


class Keyring:
    """Ordered AES-GCM keys; index 0 is the primary."""

    def __init__(self, keys: Sequence[bytes], nonce_source: NonceSource = os.urandom) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self._nonce_source = nonce_source
        self._keys: list[bytes] = []
        self._ciphers: list[AESGCM] = []
        for key in keys:
            self.add_key(key)

    @staticmethod
    def _check(key: bytes) -> None:
        if len(key) not in VALID_KEY_SIZES:
            raise ValueError(f"key must be 16, 24 or 32 bytes, got {len(key)}")

    @property
    def keys(self) -> list[bytes]:
        return list(self._keys)

    @property
    def primary_key(self) -> bytes:
        return self._keys[0]

    def add_key(self, key: bytes) -> None:
        """Install ``key`` for decryption (no-op when present)."""
        self._check(key)
        if key in self._keys:
            return
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._keys.append(key)
        self._ciphers.append(AESGCM(key))

    def use_key(self, key: bytes) -> None:
        """Make an installed ``key`` the primary (encrypting) key."""
        index = self._keys.index(key)
        self._keys.insert(0, self._keys.pop(index))
        self._ciphers.insert(0, self._ciphers.pop(index))

    def remove_key(self, key: bytes) -> None:
        """Uninstall a secondary key; the primary key cannot be removed."""
        if key == self._keys[0]:
            raise ValueError("the primary key cannot be removed")
        index = self._keys.index(key)
        del self._keys[index]
        del self._ciphers[index]

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        """``nonce || ciphertext || tag`` under the primary key."""
        nonce = self._nonce_source(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise ValueError("nonce source returned a nonce of the wrong size")
        return nonce + self._ciphers[0].encrypt(nonce, plaintext, associated_data)

    def decrypt(self, body: bytes, associated_data: bytes) -> bytes:
        """Plaintext of ``body`` under the first key that authenticates it."""
        if len(body) < ENCRYPTION_OVERHEAD:
            raise DecryptionFailed("ciphertext too short")
        from cryptography.exceptions import InvalidTag

        nonce = body[:NONCE_SIZE]
        ciphertext = body[NONCE_SIZE:]
        for cipher in self._ciphers:
            try:
                return cipher.decrypt(nonce, ciphertext, associated_data)
            except InvalidTag:
                continue
        raise DecryptionFailed("no installed key authenticates the message")
