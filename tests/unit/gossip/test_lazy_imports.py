"""The gossip core loads ``cryptography`` only when a key is installed."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import random, sys
from controlplane.gossip import GossipConfig, GossipNode, Keyring
GossipNode(GossipConfig.lan(), "a", ("10.0.0.1", 7946), rng=random.Random(1), now=0.0)
print("cryptography" in sys.modules)
Keyring([bytes(16)])
print("cryptography" in sys.modules)
"""


def test_cryptography_is_imported_with_the_first_key_only():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False", "True"]
