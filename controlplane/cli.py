"""The `controlplane` command, shaped like `serf` and `consul members`.

`controlplane agent` runs an agent; the other commands talk to a running agent
over its gRPC API (`--addr`, default `$CONTROLPLANE_ADDR` or 127.0.0.1:7946)
through the project's own client (`controlplane.client.Client`), so the command
line and every Python program share one implementation of tokens, TLS, deadlines
and error handling.
Exit status: 0 on success, 1 when the agent reports a failure or cannot be
reached, 2 on a usage error. Every error is one line on stderr that starts with
`controlplane: `, never a traceback.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from controlplane.config import (
    LOG_LEVELS,
    SETTINGS,
    AgentConfig,
    build_config,
    environment_warnings,
    load_file,
)
from controlplane.configerror import ConfigError
from controlplane.errors import ControlPlaneError, Unavailable
from controlplane.logformat import configure_logging
from controlplane.v1 import keyring_pb2, membership_pb2

if TYPE_CHECKING:
    from controlplane.client import Client

# The agent and the client are imported by the commands that use them: an agent
# process does not hold both clients in memory, and a client command starts without
# the agent's modules.

EXIT_OK = 0
EXIT_REMOTE_FAILURE = 1
EXIT_USAGE = 2
DEFAULT_ADDR = "127.0.0.1:7946"
DEFAULT_TIMEOUT = 10.0
PREFIX = "controlplane: "

# Command-line spellings of the API's enums, in Serf's words ("alive", "member-join").
STATUS_BY_NAME = {
    name.removeprefix("MEMBER_STATUS_").lower(): value
    for name, value in membership_pb2.MemberStatus.items()
    if value != membership_pb2.MEMBER_STATUS_UNSPECIFIED
}
EVENT_BY_NAME = {
    name.removeprefix("EVENT_TYPE_").lower().replace("_", "-"): value
    for name, value in membership_pb2.EventType.items()
    if value != membership_pb2.EVENT_TYPE_UNSPECIFIED
}
STATUS_NAMES = {value: name for name, value in STATUS_BY_NAME.items()}
EVENT_NAMES = {value: name for name, value in EVENT_BY_NAME.items()}


class UsageError(Exception):
    """A command-line or configuration problem, reported in one line with exit 2."""


class RemoteError(Exception):
    """The agent answered with an error or could not be reached: exit 1."""


class _Parser(argparse.ArgumentParser):
    """argparse, but every usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        # "controlplane members" -> "members: ...": main() adds the one prefix.
        command = self.prog.removeprefix("controlplane").strip()
        raise UsageError(f"{command}: {message}" if command else message)


def _version() -> str:
    # Imported here: reading package metadata costs memory that an agent, which
    # never prints its version, should not pay at every start.
    from importlib import metadata

    try:
        return metadata.version("controlplane")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


class _VersionAction(argparse.Action):
    """--version, with the version looked up only when it is asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        sys.stdout.write(f"controlplane {_version()}\n")
        parser.exit()


# ---------------------------------------------------------------- agent command


def _add_agent_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file of settings (flags and environment win)"
    )
    repeatable = {
        "join": ("--join", "ADDR"),
        "tags": ("--tag", "KEY=VALUE"),
        "rings": ("--ring", "NAME.KEY=VALUE"),
        "query_handlers": ("--query-handler", "NAME=COMMAND"),
    }
    for setting in SETTINGS.values():
        help_text = f"{setting.help}; env {setting.env}"
        if setting.name in repeatable:
            flag, metavar = repeatable[setting.name]
            parser.add_argument(
                flag, dest=setting.name, action="append", metavar=metavar, help=help_text
            )
        else:
            metavar = setting.name.upper()
            if setting.boolean:
                # `--verify-incoming` alone means true; `--verify-incoming false` is allowed.
                parser.add_argument(
                    setting.flag,
                    dest=setting.name,
                    metavar="BOOL",
                    nargs="?",
                    const="true",
                    help=help_text,
                )
                continue
            parser.add_argument(setting.flag, dest=setting.name, metavar=metavar, help=help_text)


def agent_config(args: argparse.Namespace, environ: dict[str, str]) -> AgentConfig:
    file_values = load_file(args.config) if args.config else None
    flags = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    return build_config(
        file_values=file_values,
        file_name=f"config file {args.config!r}",
        environ=environ,
        flags=flags,
    )


def cmd_agent(args: argparse.Namespace, out: TextIO) -> int:
    config = agent_config(args, dict(os.environ))
    configure_logging(config.log_level, config.log_format)
    # The agent never uses Python's OpenSSL bindings; loading it without them keeps
    # about 7 MB out of every agent process (controlplane/shell/nossl.py).
    from controlplane.shell.nossl import import_without_openssl

    import_without_openssl("controlplane.agent")
    import asyncio

    # SIGHUP reads the same sources again: the file may have changed.
    from controlplane.agent import Agent, JoinFailed
    from controlplane.shell.eventloop import choose_event_loop

    event_loop = choose_event_loop(config.event_loop)
    if event_loop.fallback is not None:
        import logging

        level = logging.WARNING if event_loop.broken else logging.INFO
        logging.getLogger("controlplane.agent").log(level, "%s", event_loop.fallback)
    environ = dict(os.environ)
    agent = Agent(config, reload_config=lambda: agent_config(args, environ))
    try:
        with asyncio.Runner(loop_factory=event_loop.factory) as runner:
            return runner.run(agent.run())
    except JoinFailed as error:
        print(PREFIX + str(error), file=sys.stderr)
        return EXIT_REMOTE_FAILURE


def cmd_keygen(args: argparse.Namespace, out: TextIO) -> int:
    # 32 bytes selects AES-256, as `serf keygen` and `consul keygen` do.
    out.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    return EXIT_OK


# ------------------------------------------------------------- client commands


def _parse_pairs(pairs: Sequence[str] | None, flag: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} must be KEY=VALUE, got {pair!r}")
        result[key] = value
    return result


# Names of the TLS files in error messages: the flags, which the environment feeds.
_TLS_FLAGS = {"ca_file": "--ca-file", "cert_file": "--cert-file", "key_file": "--key-file"}


def _client(args: argparse.Namespace) -> Client:
    """A client of the one agent at --addr: no background heartbeats, the command's
    --timeout as the deadline of each call, TLS when --ca-file or --cert-file is given."""
    from controlplane.client import Client, ClientOptions
    from controlplane.client.tls import TlsFiles, load_credentials

    files = TlsFiles(args.ca_file, args.cert_file, args.key_file)
    if args.tls_server_name and not files.enabled:
        raise UsageError("--tls-server-name needs TLS: give --ca-file (or --cert-file)")
    try:
        # Read here to name the flag in the message; the client reads them again.
        load_credentials(files, _TLS_FLAGS)
    except ValueError as error:
        raise UsageError(str(error)) from None
    options = ClientOptions(
        timeout=args.timeout,
        heartbeat=False,
        token=_token(args),
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        tls_server_name=args.tls_server_name,
    )
    try:
        return Client([args.addr], options)
    except ValueError as error:
        raise UsageError(f"--addr: {error}") from None


def _token(args: argparse.Namespace) -> str:
    """--token-file, when given, wins over --token (as Consul's -token-file does)."""
    if not args.token_file:
        return str(args.token)
    try:
        with open(args.token_file, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise UsageError(f"--token-file {args.token_file!r} cannot be read: {reason}") from None
    # Editors end files with a newline; only that one is not part of the token.
    token = text.removesuffix("\n").removesuffix("\r")
    if not token:
        raise UsageError(f"--token-file {args.token_file!r} is empty")
    return token


def _status_name(status: membership_pb2.MemberStatus.ValueType) -> str:
    return STATUS_NAMES.get(status, "unknown")


def _member_json(member: membership_pb2.Member) -> dict[str, Any]:
    return {
        "name": member.name,
        "addr": member.address,
        "port": member.port,
        "tags": dict(sorted(member.tags.items())),
        "status": _status_name(member.status),
        "incarnation": member.incarnation,
        "protocol": {
            "min": member.protocol.protocol_min,
            "max": member.protocol.protocol_max,
            "current": member.protocol.protocol_current,
        },
        "delegate": {
            "min": member.protocol.delegate_min,
            "max": member.protocol.delegate_max,
            "current": member.protocol.delegate_current,
        },
    }


def _host_port(member: membership_pb2.Member) -> str:
    return (
        f"[{member.address}]:{member.port}"
        if ":" in member.address
        else (f"{member.address}:{member.port}")
    )


def _columns(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Left-aligned columns separated by two spaces, like `serf members`."""
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


def cmd_members(args: argparse.Namespace, out: TextIO) -> int:
    statuses = []
    for status in args.status or ():
        if status.lower() not in STATUS_BY_NAME:
            choices = ", ".join(STATUS_BY_NAME)
            raise UsageError(f"--status must be one of {choices}; got {status!r}")
        statuses.append(STATUS_BY_NAME[status.lower()])
    tag_filters = _parse_pairs(args.tag, "--tag")
    with _client(args) as client:
        members = client.members(statuses=statuses, tags=tag_filters, name_pattern=args.name or "")
    if args.format == "json":
        json.dump({"members": [_member_json(m) for m in members]}, out, indent=2)
        out.write("\n")
        return EXIT_OK
    rows = []
    for member in members:
        tags = ",".join(f"{k}={v}" for k, v in sorted(member.tags.items()))
        row = [member.name, _host_port(member), _status_name(member.status)]
        if args.detailed:
            p = member.protocol
            row += [
                f"incarnation={member.incarnation}",
                f"protocol={p.protocol_min}/{p.protocol_max}/{p.protocol_current}",
            ]
        rows.append([*row, tags])
    _columns(rows, out)
    return EXIT_OK


def cmd_join(args: argparse.Namespace, out: TextIO) -> int:
    with _client(args) as client:
        contacted = client.join(args.address, replay_events=args.replay)
    out.write(f"Successfully joined cluster by contacting {contacted} nodes.\n")
    return EXIT_OK


def cmd_leave(args: argparse.Namespace, out: TextIO) -> int:
    with _client(args) as client:
        client.leave()
    out.write("Graceful leave complete\n")
    return EXIT_OK


def cmd_force_leave(args: argparse.Namespace, out: TextIO) -> int:
    with _client(args) as client:
        client.force_leave(args.name, prune=args.prune)
    out.write(f"Member {args.name} {'pruned' if args.prune else 'forced to leave'}\n")
    return EXIT_OK


def cmd_event(args: argparse.Namespace, out: TextIO) -> int:
    with _client(args) as client:
        lamport_time = client.fire_event(
            args.name, (args.payload or "").encode(), coalesce=args.coalesce
        )
    out.write(
        f"Event '{args.name}' dispatched! Coalescing enabled: {str(args.coalesce).lower()}"
        f" (lamport time {lamport_time})\n"
    )
    return EXIT_OK


def cmd_rtt(args: argparse.Namespace, out: TextIO) -> int:
    """serf rtt: the round trip between two members estimated from their network
    coordinates, as the agent knows them; the second member defaults to the agent."""
    from controlplane.gossip.names import valid_name
    from controlplane.membership.coordinate import from_wire

    for node in (args.node_a, args.node_b):
        if node is not None and not valid_name(node):
            raise UsageError(f"rtt: {node!r:.160} is not a member name")
    with _client(args) as client:
        first = client.coordinate(args.node_a)
        second = client.coordinate(args.node_b or "")
    a, b = from_wire(first.coordinate), from_wire(second.coordinate)
    if not a.is_compatible_with(b):
        print(
            f"{PREFIX}rtt: the coordinates of {first.node} and {second.node} differ in size",
            file=sys.stderr,
        )
        return EXIT_REMOTE_FAILURE
    out.write(
        f"Estimated {first.node} <-> {second.node} rtt: {a.distance_to(b) * 1000.0:.3f} ms"
        " (using LAN coordinates)\n"
    )
    return 0


def cmd_query(args: argparse.Namespace, out: TextIO) -> int:
    """`serf query`: dispatch, then print acks and responses as they arrive."""
    from controlplane.membership.queries import MAX_RELAY_FACTOR, MAX_TIMEOUT

    filter_tags = _parse_pairs(args.tag, "--tag")
    if args.query_timeout is not None and not 0 < args.query_timeout <= MAX_TIMEOUT:
        raise UsageError(
            f"--timeout must be more than 0 and at most {MAX_TIMEOUT:g} s, got {args.query_timeout}"
        )
    if not 0 <= args.relay_factor <= MAX_RELAY_FACTOR:
        raise UsageError(f"--relay-factor must be 0 to {MAX_RELAY_FACTOR}, got {args.relay_factor}")
    text = args.format == "text"
    acks: list[str] = []
    responses: dict[str, str] = {}
    with _client(args) as client:
        stream = client.query(
            args.name,
            (args.payload or "").encode(),
            filter_nodes=args.node or (),
            filter_tags=filter_tags,
            request_ack=not args.no_ack,
            relay_factor=args.relay_factor,
            timeout=args.query_timeout,
        )
        try:
            for message in stream:
                kind = message.WhichOneof("body")
                if kind == "ack":
                    member = getattr(message.ack, "from")
                    acks.append(member)
                    if text:
                        out.write(f"Ack from '{member}'\n")
                elif kind == "response":
                    member = getattr(message.response, "from")
                    payload = message.response.payload.decode(errors="replace")
                    responses[member] = payload
                    if text:
                        out.write(f"Response from '{member}': {payload}\n")
                elif kind == "dispatched":
                    if text:
                        out.write(f"Query '{args.name}' dispatched\n")
                elif kind == "done":
                    break
                out.flush()
        except KeyboardInterrupt:
            pass
    if text:
        out.write(f"Total Acks: {len(acks)}\nTotal Responses: {len(responses)}\n")
    else:
        out.write(json.dumps({"acks": acks, "responses": responses}) + "\n")
    return EXIT_OK


def cmd_tags(args: argparse.Namespace, out: TextIO) -> int:
    """Without --set or --delete, shows the agent's tags; otherwise changes them."""
    changes = _parse_pairs(args.set, "--set")
    with _client(args) as client:
        if not args.set and not args.delete:
            member = client.local_member()
        else:
            member = client.update_tags(set=changes, delete=args.delete or [])
    if args.format == "json":
        out.write(json.dumps({"name": member.name, "tags": dict(sorted(member.tags.items()))}))
        out.write("\n")
        return EXIT_OK
    tags = ",".join(f"{k}={v}" for k, v in sorted(member.tags.items()))
    out.write(f"Tags of {member.name}: {tags}\n")
    return EXIT_OK


def cmd_leader_history(args: argparse.Namespace, out: TextIO) -> int:
    with _client(args) as client:
        changes = client.leader_history()
    rows: list[dict[str, Any]] = []
    for change in changes:
        when = change.time.ToDatetime(tzinfo=UTC).isoformat(timespec="milliseconds")
        rows.append(
            {
                "time": when.replace("+00:00", "Z"),
                "leader": change.leader or None,
                "epoch": change.epoch,
                "cause": change.cause,
                "reason": change.reason,
            }
        )
    if args.format == "json":
        out.write(json.dumps({"changes": rows}) + "\n")
        return EXIT_OK
    if not rows:
        out.write("No leader changes seen yet\n")
        return EXIT_OK
    _columns(
        [["Time", "Leader", "Epoch", "Cause", "Reason"]]
        + [
            [
                str(row["time"]),
                str(row["leader"] or "-"),
                str(row["epoch"]),
                str(row["cause"]),
                str(row["reason"]),
            ]
            for row in rows
        ],
        out,
    )
    return EXIT_OK


def cmd_leader(args: argparse.Namespace, out: TextIO) -> int:
    if args.history:
        return cmd_leader_history(args, out)
    with _client(args) as client:
        response = client.leader_status()
    if not response.HasField("leader"):
        # Why there is none and when one is expected, as the agent sees it.
        election = response.election if response.HasField("election") else None
        expected = (
            election.expected_within.ToTimedelta().total_seconds()
            if election is not None and election.HasField("expected_within")
            else None
        )
        if args.format == "json":
            document: dict[str, object] = {"leader": None}
            if election is not None:
                document["election"] = {
                    "state": election.state,
                    "reason": election.reason,
                    "expected_within_seconds": None if expected is None else round(expected, 3),
                }
            out.write(json.dumps(document) + "\n")
        elif election is None:
            out.write("No leader\n")
        elif expected is None:
            out.write(f"No leader: electing ({election.reason})\n")
        else:
            out.write(
                f"No leader: electing; a leader is expected within"
                f" {max(1, round(expected))} s ({election.reason})\n"
            )
        return EXIT_OK
    leader = response.leader
    remaining = leader.lease_remaining.ToTimedelta().total_seconds()
    if args.format == "json":
        document = {
            "leader": {
                "name": leader.name,
                "address": leader.address,
                "epoch": leader.epoch,
                "lease_remaining_seconds": round(remaining, 3),
            }
        }
        out.write(json.dumps(document) + "\n")
    else:
        _columns(
            [
                ["Name", "Address", "Epoch", "Lease remaining"],
                [leader.name, leader.address, str(leader.epoch), f"{remaining:.1f}s"],
            ],
            out,
        )
    return EXIT_OK


def _decode_key(text: str, flag: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        raise UsageError(f"{flag} must be a base64 key (controlplane keygen prints one)") from None
    if len(key) not in (16, 24, 32):
        raise UsageError(f"{flag} must decode to 16, 24 or 32 bytes, got {len(key)}")
    return key


def _info_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cmd_info(args: argparse.Namespace, out: TextIO) -> int:
    with _client(args) as client:
        info = client.info()
    if args.format == "json":
        from google.protobuf import json_format

        document = json_format.MessageToDict(
            info,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        out.write(json.dumps(document, sort_keys=True) + "\n")
        return EXIT_OK
    # Serf's `info` layout: sections, then "key = value" lines in name order.
    sections: list[tuple[str, dict[str, object]]] = []
    for section in (info.agent, info.runtime, info.gossip, info.election):
        values: dict[str, object] = {}
        for field in section.DESCRIPTOR.fields:
            value = getattr(section, field.name)
            if field.message_type is not None and field.message_type.full_name == (
                "google.protobuf.Duration"
            ):
                value = f"{value.ToTimedelta().total_seconds():g}s"
            elif field.message_type is not None:  # the tags map
                value = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
            values[field.name] = value
        sections.append((section.DESCRIPTOR.name.removesuffix("Info").lower(), values))
    sections.append(
        ("rings", {ring.name: f"nodes {ring.nodes}, version {ring.version}" for ring in info.rings})
    )
    for title, values in sections:
        out.write(f"{title}:\n")
        for key in sorted(values):
            out.write(f"\t{key} = {_info_value(values[key])}\n")
    return EXIT_OK


def cmd_keys(args: argparse.Namespace, out: TextIO) -> int:
    chosen = [name for name in ("list", "install", "use", "remove") if getattr(args, name)]
    if len(chosen) != 1:
        raise UsageError("keys: give exactly one of --list, --install KEY, --use KEY, --remove KEY")
    action = chosen[0]
    result: keyring_pb2.KeyringResult
    with _client(args) as client:
        if action == "list":
            listed = client.list_keys()
            result = listed.result
            rows = [["Key", "Members", "Primary"]]
            rows += [
                [
                    base64.b64encode(k.key).decode(),
                    f"{k.members}/{result.num_nodes}",
                    str(k.primary_members),
                ]
                for k in listed.keys
            ]
            if args.format == "json":
                document = {
                    "num_nodes": result.num_nodes,
                    "num_responses": result.num_responses,
                    "errors": dict(result.errors),
                    "keys": [
                        {
                            "key": base64.b64encode(k.key).decode(),
                            "members": k.members,
                            "primary_members": k.primary_members,
                        }
                        for k in listed.keys
                    ],
                }
                out.write(json.dumps(document) + "\n")
            else:
                _columns(rows, out)
        else:
            key = _decode_key(getattr(args, action), f"--{action}")
            change = {
                "install": client.install_key,
                "use": client.use_key,
                "remove": client.remove_key,
            }[action]
            result = change(key)
            out.write(f"{action}: {result.num_responses}/{result.num_nodes} members answered\n")
    if result.errors:
        reported = "; ".join(
            f"{member}: {error}" for member, error in sorted(result.errors.items())
        )
        print(f"{PREFIX}{len(result.errors)} members refused: {reported}", file=sys.stderr)
    complete = not result.errors and result.num_responses == result.num_nodes
    return EXIT_OK if complete else EXIT_REMOTE_FAILURE


def _event_line(event: membership_pb2.Event) -> str:
    kind = EVENT_NAMES.get(event.type, "unknown")
    if event.type == membership_pb2.EVENT_TYPE_USER:
        user = event.user
        payload = user.payload.decode(errors="replace")
        return f"user: {user.name} ltime={user.lamport_time} payload={payload!r}"
    members = ", ".join(f"{m.name} ({_host_port(m)})" for m in event.members)
    return f"{kind}: {members}"


def _monitor_logs(args: argparse.Namespace, out: TextIO) -> int:
    if args.log_level not in LOG_LEVELS:
        raise UsageError(
            f"--log-level must be one of {', '.join(LOG_LEVELS)}; got {args.log_level!r}"
        )
    if args.type:
        raise UsageError("--type selects events; --log-level streams the log instead: give one")
    import time

    with _client(args) as client:
        lines = client.monitor(args.log_level)
        try:
            for line in lines:
                if line.dropped:
                    out.write(f"[{line.dropped} lines dropped: this reader fell behind]\n")
                seconds = line.time.seconds + line.time.nanos / 1e9
                if args.format == "json":
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
                    document = {
                        "@timestamp": f"{stamp}.{line.time.nanos // 1_000_000:03d}Z",
                        "@level": line.level,
                        "@module": line.logger,
                        "@message": line.message,
                    }
                    out.write(json.dumps(document) + "\n")
                else:
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
                    out.write(f"{stamp} {line.level.upper()} {line.logger}: {line.message}\n")
                out.flush()
        except KeyboardInterrupt:
            pass  # closing the client ends the stream
    return EXIT_OK


def cmd_monitor(args: argparse.Namespace, out: TextIO) -> int:
    if args.log_level is not None:
        return _monitor_logs(args, out)
    types = []
    for kind in args.type or ():
        if kind.lower() not in EVENT_BY_NAME:
            raise UsageError(f"--type must be one of {', '.join(EVENT_BY_NAME)}; got {kind!r}")
        types.append(EVENT_BY_NAME[kind.lower()])
    with _client(args) as client, client.watch_events(types=types) as watch:
        try:
            for update in watch:
                if args.format == "json":
                    out.write(json.dumps(_event_json(update.event)) + "\n")
                else:
                    out.write(_event_line(update.event) + "\n")
                out.flush()
        except KeyboardInterrupt:
            watch.close()
    return EXIT_OK


def _event_json(event: membership_pb2.Event) -> dict[str, Any]:
    result: dict[str, Any] = {"type": EVENT_NAMES.get(event.type, "unknown")}
    if event.type == membership_pb2.EVENT_TYPE_USER:
        result["user"] = {
            "name": event.user.name,
            "payload": event.user.payload.decode(errors="replace"),
            "ltime": event.user.lamport_time,
            "coalesce": event.user.coalesce,
        }
    else:
        result["members"] = [_member_json(m) for m in event.members]
    return result


# -------------------------------------------------------------------- parser


def _add_client_flags(
    parser: argparse.ArgumentParser, *, with_format: bool = False, with_timeout: bool = True
) -> None:
    parser.add_argument(
        "--addr",
        default=os.environ.get("CONTROLPLANE_ADDR", DEFAULT_ADDR),
        help="agent gRPC address host:port (default $CONTROLPLANE_ADDR or 127.0.0.1:7946)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("CONTROLPLANE_TOKEN", ""),
        help="API token (default $CONTROLPLANE_TOKEN)",
    )
    parser.add_argument(
        "--token-file",
        default=os.environ.get("CONTROLPLANE_TOKEN_FILE", ""),
        help="file holding the API token (default $CONTROLPLANE_TOKEN_FILE); keeps it out of ps",
    )
    parser.add_argument(
        "--ca-file",
        default=os.environ.get("CONTROLPLANE_CACERT", ""),
        help="PEM CA bundle; speak TLS to the agent (default $CONTROLPLANE_CACERT)",
    )
    parser.add_argument(
        "--cert-file",
        default=os.environ.get("CONTROLPLANE_CLIENT_CERT", ""),
        help="PEM client certificate for mTLS (default $CONTROLPLANE_CLIENT_CERT)",
    )
    parser.add_argument(
        "--key-file",
        default=os.environ.get("CONTROLPLANE_CLIENT_KEY", ""),
        help="PEM key of --cert-file (default $CONTROLPLANE_CLIENT_KEY)",
    )
    parser.add_argument(
        "--tls-server-name",
        default=os.environ.get("CONTROLPLANE_TLS_SERVER_NAME", ""),
        help="name expected in the agent's certificate (default: the host of --addr)",
    )
    if with_timeout:
        parser.add_argument(
            "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for the agent"
        )
    else:
        parser.set_defaults(timeout=DEFAULT_TIMEOUT)
    if with_format:
        parser.add_argument(
            "--format", choices=["text", "json"], default="text", help="output format"
        )


Command = Callable[[argparse.Namespace, TextIO], int]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="controlplane", description="controlplane agent and tools")
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="print the version and exit",
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, help="one of:"
    )
    commands.required = True

    agent = commands.add_parser("agent", help="run an agent (gossip member and gRPC API)")
    _add_agent_flags(agent)
    agent.set_defaults(run=cmd_agent)

    keygen = commands.add_parser("keygen", help="print a new gossip encryption key")
    keygen.set_defaults(run=cmd_keygen)

    members = commands.add_parser("members", help="list the members of the cluster")
    _add_client_flags(members, with_format=True)
    members.add_argument("--detailed", action="store_true", help="show incarnation and protocol")
    members.add_argument(
        "--status", action="append", help="alive, leaving, left or failed (repeatable)"
    )
    members.add_argument(
        "--tag", action="append", metavar="KEY=REGEX", help="tag filter, RE2 (repeatable)"
    )
    members.add_argument("--name", metavar="REGEX", help="name filter, RE2")
    members.set_defaults(run=cmd_members)

    join = commands.add_parser("join", help="make the agent join a cluster")
    _add_client_flags(join)
    join.add_argument("address", nargs="+", help="host or host:port of a member")
    join.add_argument("--replay", action="store_true", help="replay past user events")
    join.set_defaults(run=cmd_join)

    leave = commands.add_parser("leave", help="make the agent leave the cluster gracefully")
    _add_client_flags(leave)
    leave.set_defaults(run=cmd_leave)

    force = commands.add_parser("force-leave", help="force a failed member to leave")
    _add_client_flags(force)
    force.add_argument("name", help="member name")
    force.add_argument("--prune", action="store_true", help="erase it from the list at once")
    force.set_defaults(run=cmd_force_leave)

    rtt = commands.add_parser(
        "rtt", help="estimate the round trip time between two members from their coordinates"
    )
    _add_client_flags(rtt)
    rtt.add_argument("node_a", metavar="A", help="member name")
    rtt.add_argument("node_b", metavar="B", nargs="?", help="member name (default: the agent)")
    rtt.set_defaults(run=cmd_rtt)

    event = commands.add_parser("event", help="fire a user event")
    _add_client_flags(event)
    event.add_argument("name", help="event name")
    event.add_argument("payload", nargs="?", default="", help="event payload (default empty)")
    event.add_argument("--coalesce", action="store_true", help="allow coalescing by name")
    event.set_defaults(run=cmd_event)

    query = commands.add_parser(
        "query", help="ask members a query and print their acks and responses"
    )
    # --timeout is the query's, as in `serf query`.
    _add_client_flags(query, with_format=True, with_timeout=False)
    query.add_argument("name", help="query name")
    query.add_argument("payload", nargs="?", default="", help="query payload (default empty)")
    query.add_argument(
        "--node", action="append", metavar="NAME", help="only this member answers (repeatable)"
    )
    query.add_argument(
        "--tag",
        action="append",
        metavar="KEY=REGEX",
        help="only members whose tag matches the RE2 expression answer (repeatable)",
    )
    query.add_argument("--no-ack", action="store_true", help="do not ask members for acks")
    query.add_argument(
        "--relay-factor",
        type=int,
        default=0,
        metavar="K",
        help="members that also carry each answer back, 0 to 5 (default 0)",
    )
    query.add_argument(
        "--timeout",
        dest="query_timeout",
        type=float,
        metavar="SECONDS",
        help="how long to collect answers, at most 300 (default: Serf's, grows with the cluster)",
    )
    query.set_defaults(run=cmd_query)

    monitor = commands.add_parser(
        "monitor", help="stream events, or the agent's log with --log-level, until interrupted"
    )
    _add_client_flags(monitor, with_format=True)
    monitor.add_argument("--type", action="append", help="event type filter (repeatable)")
    monitor.add_argument(
        "--log-level",
        help="stream the agent's log lines at this level and above instead of events"
        " (debug, info, warning, error)",
    )
    monitor.set_defaults(run=cmd_monitor)

    leader = commands.add_parser("leader", help="show the elected leader and its epoch")
    _add_client_flags(leader, with_format=True)
    leader.add_argument(
        "--history",
        action="store_true",
        help="the last leader changes the agent saw (at most 100), oldest first",
    )
    leader.set_defaults(run=cmd_leader)

    info = commands.add_parser("info", help="describe the agent: runtime, members, election")
    _add_client_flags(info, with_format=True)
    info.set_defaults(run=cmd_info)

    keys = commands.add_parser("keys", help="list, install, use or remove gossip keys")
    _add_client_flags(keys, with_format=True)
    keys.add_argument("--list", action="store_true", help="list the keys across the cluster")
    keys.add_argument("--install", metavar="KEY", help="install a base64 key everywhere")
    keys.add_argument("--use", metavar="KEY", help="make an installed key the primary")
    keys.add_argument("--remove", metavar="KEY", help="remove a key that is not primary")
    keys.set_defaults(run=cmd_keys)

    tags = commands.add_parser("tags", help="show, set or delete tags of the agent")
    _add_client_flags(tags, with_format=True)
    tags.add_argument("--set", action="append", metavar="KEY=VALUE", help="set a tag (repeatable)")
    tags.add_argument("--delete", action="append", metavar="KEY", help="delete a tag (repeatable)")
    tags.set_defaults(run=cmd_tags)
    return parser


def _describe(error: ControlPlaneError, addr: str) -> str:
    """One line: the agent's own status and words, or why it could not be asked."""
    if not error.status_message:
        # Raised by the client itself: no answer from the agent at all.
        if isinstance(error, Unavailable):
            return f"cannot reach the agent at {addr}: {error}"
        return str(error)
    return f"{error.code.name}: {error.status_message}"


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    stdout = out or sys.stdout
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        for warning in environment_warnings(os.environ):
            print(PREFIX + warning, file=sys.stderr)
        run: Command = args.run
        return run(args, stdout)
    except (UsageError, ConfigError) as error:
        print(PREFIX + str(error), file=sys.stderr)
        return EXIT_USAGE
    except ControlPlaneError as error:
        addr = getattr(args, "addr", "?")
        print(PREFIX + _describe(error, addr), file=sys.stderr)
        return EXIT_REMOTE_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
