"""The `controlplane` command: `controlplane agent` runs an agent.

Usage errors (unknown flags, bad values, unknown config keys, a taken port) print
one line to stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from controlplane.agent import Agent, AgentStartError
from controlplane.config import SETTINGS, AgentConfig, ConfigError, build_config, load_file

EXIT_OK = 0
EXIT_REMOTE_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A command-line or configuration problem, reported in one line with exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but every usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _add_agent_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    repeatable = {"join": "ADDR", "tags": "KEY=VALUE"}
    for setting in SETTINGS.values():
        if setting.name in repeatable:
            flag = "--tag" if setting.name == "tags" else setting.flag
            parser.add_argument(
                flag,
                dest=setting.name,
                action="append",
                metavar=repeatable[setting.name],
                help=setting.help,
            )
        else:
            parser.add_argument(setting.flag, dest=setting.name, metavar="VALUE", help=setting.help)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="controlplane", description="controlplane agent and tools")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    agent = commands.add_parser("agent", help="run an agent (gossip member and gRPC API)")
    _add_agent_flags(agent)
    return parser


def agent_config(args: argparse.Namespace, environ: dict[str, str]) -> AgentConfig:
    file_values = load_file(args.config) if args.config else None
    flags = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    return build_config(
        file_values=file_values,
        file_name=f"config file {args.config!r}",
        environ=environ,
        flags=flags,
    )


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_agent(config: AgentConfig) -> int:
    _configure_logging(config.log_level)
    return asyncio.run(Agent(config).run())


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "agent":
            config = agent_config(args, dict(os.environ))
            return run_agent(config)
    except (UsageError, ConfigError) as error:
        message = str(error)
        print(
            message if message.startswith("controlplane") else f"controlplane: {message}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except AgentStartError as error:
        print(f"controlplane agent: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
