"""How the agent's log lines look: text for people, JSON for log pipelines.

JSON lines carry the keys of HashiCorp's hclog (Serf's and Consul's `log_json`),
so a pipeline that parses Consul's logs parses these: `@timestamp` (RFC 3339,
UTC, milliseconds), `@level` (lower case), `@module` (the logger) and `@message`,
plus `@exception` with the traceback when there is one. One object per line,
keys in that order, nothing else added.
"""

from __future__ import annotations

import json
import logging
import sys
import time

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Python's level names as hclog spells them.
_LEVELS = {"WARNING": "warn", "CRITICAL": "error"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with hclog's keys."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z"
        line = {
            "@timestamp": stamp,
            "@level": _LEVELS.get(record.levelname, record.levelname.lower()),
            "@module": record.name,
            "@message": record.getMessage(),
        }
        if record.exc_info:
            line["@exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    """The root logger writes to stderr at `level` in `log_format`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    """Changes the root logger's level (a reload uses it)."""
    logging.getLogger().setLevel(getattr(logging, level.upper()))
