"""Atheris harnesses for everything the agent reads from the network or from disk.

One module per target (``python -m fuzz.<harness> --seconds N``); ``fuzz.runner``
holds what they share. ``make fuzz`` runs each for ``FUZZ_SECONDS``, ``make
fuzz-smoke`` for a few seconds as part of ``make test``.
"""
