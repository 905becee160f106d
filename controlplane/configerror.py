"""The one error of configuration: a setting, flag, file or data-directory file the
agent cannot start with.

Settings (config.py), the tokens file (api/auth.py), the TLS files (shell/tls.py),
the data directory and its files (datadir.py, the keyring file, ring registrations,
the epoch file) and the election's parameters (election/config.py) all raise it,
with a message that names the setting or the file and what is wrong, in one line.
The command line catches it once: exit status 2 and that line. A leaf module, so
that the pure cores can raise it without importing the agent's configuration.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value, or a file read at start, that the agent cannot use."""
