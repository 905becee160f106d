"""The agent's one frozen configuration and where its values come from.

Precedence, lowest first: built-in defaults < a TOML file (`--config`) <
`CONTROLPLANE_*` environment variables < command-line flags. Every setting is
described once, in `SETTINGS`, with its parser and validator, so the file, the
environment and the flags cannot disagree about what a value means. Any problem
raises `ConfigError` with one line naming the setting, its source and the rule.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controlplane.configerror import ConfigError
from controlplane.logformat import LOG_FORMATS

if TYPE_CHECKING:
    # The ring is imported when a ring is configured (_ring_settings): it imports
    # hashlib, and the agent must start without OpenSSL loaded (shell/nossl.py).
    from controlplane.ring import LookupRule, RingSettings, VnodeFormula

PROFILES = ("lan", "wan", "local")
ROLES = ("server", "client")
LOG_LEVELS = ("debug", "info", "warning", "error")
# The agent's event loop (shell/eventloop.py).
EVENT_LOOPS = ("auto", "uvloop", "asyncio")
NODE_NAME_MAX = 128
NODE_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
DEFAULT_PORT = 7946  # memberlist's and Serf's default bind port
ENV_PREFIX = "CONTROLPLANE_"
# CONTROLPLANE_* variables that are not agent settings, and who reads them.
OTHER_ENVIRONMENT: Mapping[str, str] = {
    "CONTROLPLANE_ADDR": "the command-line tools' agent address",
    "CONTROLPLANE_TOKEN": "the command-line tools' API token",
    "CONTROLPLANE_TOKEN_FILE": "the command-line tools' API token, read from a file",
    "CONTROLPLANE_CACERT": "the command-line tools' CA file (TLS to the agent)",
    "CONTROLPLANE_CLIENT_CERT": "the command-line tools' client certificate (mTLS)",
    "CONTROLPLANE_CLIENT_KEY": "the command-line tools' client key (mTLS)",
    "CONTROLPLANE_TLS_SERVER_NAME": "the name the tools expect in the agent's certificate",
    "CONTROLPLANE_HEALTH_TARGET": "the container image's health check",
    "CONTROLPLANE_STRICT": "strict mode: a bug inside the gossip core raises (tests)",
    "CONTROLPLANE_IMAGE": "docker-compose.yml",
    "CONTROLPLANE_DEBIAN_MIRROR": "scripts/build-images.sh",
    "CONTROLPLANE_DOCKER_STATE": "scripts/docker-engine.sh",
    "CONTROLPLANE_DOCKER_WAIT": "scripts/docker-engine.sh",
}
# A host name as a join address may spell it: labels of letters, digits, '-' and '_'
# (container names have underscores), dots between them.
_HOST_NAME_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9_][A-Za-z0-9_-]{0,62}(?:\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?"
)


def default_node_name() -> str:
    """The host name, trimmed to a valid node name (as Serf defaults to it)."""
    name = socket.gethostname().split(".")[0] or "controlplane"
    cleaned = "".join(c if NODE_NAME_RE.fullmatch(c) else "-" for c in name)
    return cleaned[:NODE_NAME_MAX]


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything an agent needs to start; immutable once built."""

    node: str = field(default_factory=default_node_name)
    bind: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    advertise: str = ""
    profile: str = "lan"
    role: str = "server"
    rank: int = 0
    election_quorum: int = 0
    # The datacenter this agent runs in (its member tag `dc`); clients that know
    # theirs keep other datacenters' servers as backups.
    datacenter: str = ""
    # hnatsd's election timings (docs/election.md, Parameters), checked together by
    # check_election: every server of a cluster needs the same values.
    lease_time: float = 10.0
    beat_interval: float = 1.0
    max_clock_skew: float = 1.0
    join: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    data_dir: str = ""
    # Secrets: never in a repr (and so never in a log line or a traceback).
    encrypt: str = field(default="", repr=False)
    api_token: str = field(default="", repr=False)
    api_tokens_file: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    verify_incoming: bool = False
    verify_outgoing: bool = False
    verify_server_hostname: bool = False
    cluster_label: str = ""
    log_level: str = "info"
    log_format: str = "text"
    drain_period: float = 2.0
    shutdown_grace: float = 5.0
    loop_lag_interval: float = 0.5
    # uvloop when it is installed (shell/eventloop.py: the RPC path's CPU is mostly
    # the event loop's), asyncio's own loop otherwise.
    event_loop: str = "auto"
    # "host:port" of the Prometheus listener; empty: no metrics.
    metrics_addr: str = ""
    # Serf's event coalescing (docs/configuration.md): member events off, user events
    # that ask for it on with the values Serf's agent uses (3 s, 1 s).
    coalesce_period: float = 0.0
    quiescent_period: float = 0.0
    user_coalesce_period: float = 3.0
    user_quiescent_period: float = 1.0
    # Joins: the first attempts come quickly so agents started together find each
    # other fast, then back off to Serf's RetryInterval of 30 s; after retry_max
    # attempts (0: never) the agent gives up and exits 1.
    retry_interval: float = 1.0
    retry_max: int = 0
    # Serf's leave_on_terminate and rejoin_after_leave, both on (Serf: both off):
    # behind an orchestrator a SIGTERM is a restart or a rescheduling, so the agent
    # drains and leaves (clients move away before it is gone, members see `left`,
    # not `failed`), and a restart rejoins the members of its snapshot even after
    # that leave (docs/decisions.md).
    leave_on_terminate: bool = True
    rejoin_after_leave: bool = True
    # memberlist's DisableTcpPings, default false: a member whose UDP probe goes unanswered
    # is pinged over its gRPC port before it is suspected (docs/gossip.md).
    disable_tcp_pings: bool = False
    # Serf's defaults (serf/config.go).
    reconnect_interval: float = 30.0
    reconnect_timeout: float = 24 * 3600.0
    tombstone_timeout: float = 24 * 3600.0
    # Placement settings of named rings (docs/ring.md); other rings use the defaults.
    rings: Mapping[str, RingSettings] = field(default_factory=dict)
    # Serf's DisableCoordinates (false): no Vivaldi coordinate, so no `rtt` and no
    # `near` ordering.
    disable_coordinates: bool = False
    # Query handlers (docs/queries.md): query name (or "*") -> command, run without a
    # shell, as Serf's agent runs its event handlers; killed after the timeout.
    query_handlers: Mapping[str, str] = field(default_factory=dict)
    query_handler_timeout: float = 5.0

    @property
    def encryption_key(self) -> bytes | None:
        """The decoded gossip key, or None when gossip is not encrypted."""
        return base64.b64decode(self.encrypt, validate=True) if self.encrypt else None

    @property
    def advertise_address(self) -> str:
        """The address other members and clients use to reach this agent.

        Bound to every interface (0.0.0.0 or ::), the agent advertises the host's
        first non-loopback address, as Serf does, so that agents in containers or
        on separate hosts can reach each other without `--advertise`.
        """
        if self.advertise:
            return self.advertise
        bind = ipaddress.ip_address(self.bind)
        if bind.is_unspecified:
            return host_address(bind.version)
        return self.bind

    @property
    def listen_target(self) -> str:
        """The "host:port" a gRPC server binds, with IPv6 hosts bracketed."""
        return format_host_port(self.bind, self.port)


def host_address(version: int) -> str:
    """The first non-loopback address of this host's name, else loopback."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_DGRAM)
    except OSError:
        infos = []
    for info in infos:
        candidate = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not (candidate.is_loopback or candidate.is_unspecified or candidate.is_link_local):
            return str(candidate)
    return "127.0.0.1" if version == 4 else "::1"


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---- parsers: each takes the raw value (a TOML value or a string) -------------


def _parse_str(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"must be a string, got {type(raw).__name__}")
    return raw


def _parse_int(raw: object) -> int:
    if isinstance(raw, bool):
        raise ValueError("must be an integer, got a boolean")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        try:
            return int(raw.strip(), 10)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
    raise ValueError(f"must be an integer, got {type(raw).__name__}")


def _parse_float(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError("must be a number of seconds, got a boolean")
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        text = raw.strip().removesuffix("s")
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"must be a number of seconds, got {raw!r}") from None
    raise ValueError(f"must be a number of seconds, got {type(raw).__name__}")


def _parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[raw.strip().lower()]
    raise ValueError(f"must be true or false, got {raw!r}")


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _parse_list(raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
        return tuple(raw)
    raise ValueError("must be a list of strings (or a comma-separated string)")


def _parse_tags(raw: object) -> dict[str, str]:
    if isinstance(raw, Mapping):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
            raise ValueError("must map strings to strings")
        return dict(raw)
    pairs = _parse_list(raw)
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"must be key=value pairs, got {pair!r}")
        tags[key] = value
    return tags


# The keys of one ring's table, in the order they are listed in messages.
_RING_KEYS = ("lookup", "points_per_vnode", "vnode_formula", "vnodes")
# More named rings than any deployment needs; each costs an empty snapshot.
MAX_CONFIGURED_RINGS = 100


# Query handlers an agent may have; each names one query (or "*").
MAX_QUERY_HANDLERS = 64


def _parse_query_handlers(raw: object) -> dict[str, str]:
    """`query_handlers`: a TOML table (`[query_handlers] deploy = "/usr/bin/deploy"`),
    or NAME=COMMAND items (flags, environment). The command is split as a POSIX shell
    splits words (quotes work) but is never given to a shell."""
    import shlex

    from controlplane.membership.validation import MAX_EVENT_NAME_SIZE, valid_query_name

    if isinstance(raw, Mapping):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
            raise ValueError("must map query names to command strings")
        handlers = dict(raw)
    elif isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
        handlers = {}
        for item in raw:
            name, sep, command = item.partition("=")
            if not sep:
                raise ValueError(f"must be NAME=COMMAND items, got {item[:80]!r}")
            handlers[name.strip()] = command.strip()
    elif isinstance(raw, str):
        return _parse_query_handlers([raw])
    else:
        raise ValueError("must be a table of query names to commands, or NAME=COMMAND items")
    if len(handlers) > MAX_QUERY_HANDLERS:
        raise ValueError(f"may name at most {MAX_QUERY_HANDLERS} handlers, got {len(handlers)}")
    for name, command in handlers.items():
        if not valid_query_name(name):
            raise ValueError(
                f"query name {name[:80]!r} must be 1 to {MAX_EVENT_NAME_SIZE} bytes without"
                " control characters, or *"
            )
        try:
            argv = shlex.split(command)
        except ValueError as error:
            raise ValueError(f"command of {name!r} cannot be split: {error}") from None
        if not argv:
            raise ValueError(f"command of {name!r} is empty")
    return handlers


def _check_handler_timeout(value: float) -> None:
    if not 0 < value <= 300:
        raise ValueError(f"must be more than 0 and at most 300 seconds, got {value:g}")


def _parse_rings(raw: object) -> dict[str, RingSettings]:
    """`rings`: a TOML table of tables (`[rings.cache] points_per_vnode = 3`), or
    `NAME.KEY=VALUE` items (flags, environment) that spell the same dotted keys.

    Each ring is checked whole here, so that a bad value names its ring and key."""
    tables: dict[str, dict[str, object]] = {}
    if isinstance(raw, Mapping):
        for name, table in raw.items():
            if not isinstance(table, Mapping):
                raise ValueError(
                    f"entry {name!r} must be a table of {', '.join(_RING_KEYS)}"
                    f" (for example [rings.{name}] vnodes = 40)"
                )
            tables[str(name)] = dict(table)
    else:
        for item in _parse_list(raw):
            dotted, sep, value = item.partition("=")
            name, dot, key = dotted.strip().rpartition(".")
            if not sep or not dot:
                raise ValueError(f"must be NAME.KEY=VALUE items, got {item!r}")
            tables.setdefault(name, {})[key] = value.strip()
    if len(tables) > MAX_CONFIGURED_RINGS:
        raise ValueError(f"may configure at most {MAX_CONFIGURED_RINGS} rings, got {len(tables)}")
    return {_ring_name(name): _ring_settings(name, table) for name, table in sorted(tables.items())}


def _ring_name(name: str) -> str:
    from controlplane.gossip.names import NAME_RE

    if not NAME_RE.fullmatch(name):
        raise ValueError(
            f"entry {name[:80]!r} must name a ring: 1 to 128 characters of [A-Za-z0-9._-]"
        )
    return name


def _ring_settings(name: str, table: Mapping[str, object]) -> RingSettings:
    unknown = sorted(set(table) - set(_RING_KEYS))
    if unknown:
        raise ValueError(
            f"entry '{name}.{unknown[0]}' is not a ring setting (known: {', '.join(_RING_KEYS)})"
        )
    from controlplane.ring import MAX_VNODES, LookupRule, RingSettings, VnodeFormula
    from controlplane.ring.ketama import MAX_POINTS_PER_VNODE

    defaults = RingSettings()

    def number(key: str, default: int, high: int) -> int:
        if key not in table:
            return default
        try:
            value = _parse_int(table[key])
        except ValueError as error:
            raise ValueError(f"entry '{name}.{key}' {error}") from None
        if not 1 <= value <= high:
            raise ValueError(f"entry '{name}.{key}' must be from 1 to {high}, got {value}")
        return value

    def choice(key: str, kind: type[VnodeFormula] | type[LookupRule]) -> Any:
        raw = table.get(key)
        if raw is None:
            return None
        names = [member.value for member in kind]
        if not isinstance(raw, str) or raw.strip() not in names:
            raise ValueError(f"entry '{name}.{key}' must be one of {', '.join(names)}; got {raw!r}")
        return kind(raw.strip())

    return RingSettings(
        vnodes=number("vnodes", defaults.vnodes, MAX_VNODES),
        points_per_vnode=number(
            "points_per_vnode", defaults.points_per_vnode, MAX_POINTS_PER_VNODE
        ),
        vnode_formula=choice("vnode_formula", VnodeFormula) or defaults.vnode_formula,
        lookup=choice("lookup", LookupRule) or defaults.lookup,
    )


# ---- validators: raise ValueError with the rule that was broken -----------------


def _check_node(value: str) -> None:
    if not 1 <= len(value) <= NODE_NAME_MAX or not NODE_NAME_RE.fullmatch(value):
        raise ValueError(
            f"must be 1 to {NODE_NAME_MAX} characters of letters, digits, '-', '_' and '.',"
            f" got {value!r}"
        )


def _check_ip(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"must be an IPv4 or IPv6 address, got {value!r}") from None


def _check_optional_ip(value: str) -> None:
    if value:
        _check_ip(value)


def _check_port(value: int) -> None:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be an integer from 1 to 65535, got {value}")


def _one_of(choices: Sequence[str]) -> Callable[[str], None]:
    def check(value: str) -> None:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")

    return check


def _check_rank(value: int) -> None:
    if not 0 <= value <= 1_000_000:
        raise ValueError(f"must be an integer from 0 to 1000000, got {value}")


def _check_quorum(value: int) -> None:
    if not 0 <= value <= 1000:
        raise ValueError(f"must be 0 (off) or the number of voters, up to 1000; got {value}")


def _check_datacenter(value: str) -> None:
    from controlplane.gossip.names import valid_name

    if value and not valid_name(value):
        raise ValueError(f"must be 1 to 128 characters of [A-Za-z0-9._-], got {value[:80]!r}")


def _check_lease_time(value: float) -> None:
    if not 1 <= value <= 600:
        raise ValueError(f"must be from 1 to 600 seconds, got {value}")


def _check_beat_interval(value: float) -> None:
    if not 0.05 <= value <= 60:
        raise ValueError(f"must be from 0.05 to 60 seconds, got {value}")


def _check_max_clock_skew(value: float) -> None:
    if not 0 <= value <= 60:
        raise ValueError(f"must be from 0 to 60 seconds, got {value}")


def check_election(config: AgentConfig) -> None:
    """lease_time, beat_interval and max_clock_skew are safe only together (the lease
    rule, ElectionConfig.validate), and a pause must be told from a quiet cluster: the
    membership layer's fastest failure detection must take longer than 1.5 beats."""
    from controlplane.election import ElectionConfig
    from controlplane.election.election import PAUSE_BEATS
    from controlplane.gossip.config import PROFILES

    try:
        ElectionConfig(
            lease_time=config.lease_time,
            beat_interval=config.beat_interval,
            max_clock_skew=config.max_clock_skew,
            quorum=config.election_quorum,
        )
    except ConfigError as error:
        raise ConfigError(f"election settings refused: {error}") from None
    gossip = PROFILES[config.profile]()
    detection = gossip.suspicion_mult * gossip.probe_interval
    if PAUSE_BEATS * config.beat_interval >= detection:
        raise ConfigError(
            f"election settings refused: beat_interval ({config.beat_interval:g} s) must be"
            f" below {detection / PAUSE_BEATS:g} s with profile {config.profile}: a member"
            f" silent for {PAUSE_BEATS:g} beats counts as paused, and the fastest failure"
            f" detection ({detection:g} s) must take longer"
        )


def _check_grace(value: float) -> None:
    if not 0 <= value <= 300:
        raise ValueError(f"must be from 0 to 300 seconds, got {value}")


def _check_loop_lag_interval(value: float) -> None:
    if not 0.01 <= value <= 60:
        raise ValueError(f"must be from 0.01 to 60 seconds, got {value}")


def _check_period(value: float) -> None:
    if not 0 <= value <= 60:
        raise ValueError(f"must be from 0 (off) to 60 seconds, got {value}")


def _check_retry_interval(value: float) -> None:
    if not 0.1 <= value <= 300:
        raise ValueError(f"must be from 0.1 to 300 seconds, got {value}")


def _check_retry_max(value: int) -> None:
    if not 0 <= value <= 10_000:
        raise ValueError(f"must be 0 (retry forever) to 10000 attempts, got {value}")


def _check_reconnect_interval(value: float) -> None:
    if not 1 <= value <= 3600:
        raise ValueError(f"must be from 1 to 3600 seconds, got {value}")


def _check_long_timeout(value: float) -> None:
    # Short values are for tests: in production a failed member reaped within seconds
    # cannot come back through reconnects (docs/configuration.md).
    if not 1 <= value <= 30 * 24 * 3600:
        raise ValueError(f"must be from 1 second to 30 days, got {value}")


def check_coalescing(config: AgentConfig) -> None:
    """Serf coalesces only when both periods are set; one without the other would be
    silently off, so it is refused, as is a quiescent period longer than the window."""
    for kind, period, quiescent in (
        ("", config.coalesce_period, config.quiescent_period),
        ("user_", config.user_coalesce_period, config.user_quiescent_period),
    ):
        if bool(period) != bool(quiescent):
            given, missing = (
                (f"{kind}coalesce_period", f"{kind}quiescent_period")
                if period
                else (f"{kind}quiescent_period", f"{kind}coalesce_period")
            )
            raise ConfigError(
                f"{given} is set but {missing} is not: coalescing needs both (or both 0 for off)"
            )
        if quiescent > period:
            raise ConfigError(
                f"{kind}quiescent_period ({quiescent:g} s) must not exceed"
                f" {kind}coalesce_period ({period:g} s): the window would never end early"
            )


def split_metrics_address(text: str) -> tuple[str, int]:
    """Splits "host:port" or "[v6]:port" with an IP literal host; ValueError says why."""
    problem = f"must be IP:port (an IP address, not a host name), got {text!r}"
    try:
        host, port = split_join_address(text)
    except ValueError:
        raise ValueError(problem) from None
    if port is None or not _is_ip(host, version=6 if ":" in host else 4):
        raise ValueError(problem)
    return host, port


def _check_metrics_addr(value: str) -> None:
    if value:
        split_metrics_address(value)


def split_join_address(text: str) -> tuple[str, int | None]:
    """Splits a join address, "host", "host:port", "[v6]:port" or a bare IPv6 address,
    into host and port (None: the agent's own port). Raises ValueError saying why."""
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"address {text!r} must be host or host:port")
    port_text: str | None = None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"address {text!r} must be [IPv6]:port")
        port_text = rest[1:] if rest else None
        if not _is_ip(host, version=6):
            raise ValueError(f"address {text!r} has no IPv6 address between the brackets")
    elif text.count(":") > 1:
        host = text
        if not _is_ip(host, version=6):
            raise ValueError(f"address {text!r} is neither host:port nor an IPv6 address")
    else:
        host, colon, rest = text.partition(":")
        port_text = rest if colon else None
        numeric = host.replace(".", "").isdigit()  # digits and dots: an IPv4 address or nothing
        if not (_is_ip(host, version=4) or (not numeric and _HOST_NAME_RE.fullmatch(host))):
            raise ValueError(f"address {text!r} has no valid host name or IPv4 address")
    if port_text is None:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"address {text!r} has port {port_text!r}; a port is 1 to 65535")
    return host, int(port_text)


def _is_ip(text: str, *, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def _check_join(value: tuple[str, ...]) -> None:
    for address in value:
        split_join_address(address)


def _check_tags(value: Mapping[str, str]) -> None:
    encoded = sum(len(k.encode()) + len(v.encode()) for k, v in value.items())
    if encoded > 512:
        raise ValueError(f"must encode to at most 512 bytes, got {encoded}")


def _check_encrypt(value: str) -> None:
    if not value:
        return
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be a base64-encoded key (like `serf keygen` prints)") from None
    if len(key) not in (16, 24, 32):
        raise ValueError(f"must decode to 16, 24 or 32 bytes (AES-128/192/256), got {len(key)}")


def _check_token(value: str) -> None:
    if value and (len(value) < 8 or any(c.isspace() or not c.isprintable() for c in value)):
        raise ValueError("must be at least 8 printable characters without spaces")


def _check_label(value: str) -> None:
    # The label travels in every frame with a one-byte length (docs/gossip.md).
    if len(value.encode()) > 255:
        raise ValueError(f"must be at most 255 bytes of UTF-8, got {len(value.encode())}")


def _no_check(value: Any) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Setting:
    """How one configuration key is parsed and validated, whatever its source."""

    name: str
    parse: Callable[[object], Any]
    check: Callable[[Any], None]
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def boolean(self) -> bool:
        """A switch: on the command line, the flag alone means true."""
        return self.parse is _parse_bool


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("node", _parse_str, _check_node, "unique node name (default: the host name)"),
        Setting(
            "bind",
            _parse_str,
            _check_ip,
            "IP address for gossip (UDP) and the gRPC API (TCP) (default 127.0.0.1)",
        ),
        Setting("port", _parse_int, _check_port, "UDP gossip and TCP gRPC port (default 7946)"),
        Setting(
            "advertise",
            _parse_str,
            _check_optional_ip,
            "address announced to other members and clients (default: the bind address)",
        ),
        Setting(
            "profile",
            _parse_str,
            _one_of(PROFILES),
            "timing profile: lan, wan or local (default lan)",
        ),
        Setting(
            "role",
            _parse_str,
            _one_of(ROLES),
            "server (handed to clients in server lists) or client (default server)",
        ),
        Setting(
            "rank",
            _parse_int,
            _check_rank,
            "election rank; the alive server with the lowest rank leads (default 0)",
        ),
        Setting(
            "election_quorum",
            _parse_int,
            _check_quorum,
            "expected voters; a leader needs a majority of them (default 0: off)",
        ),
        Setting(
            "datacenter",
            _parse_str,
            _check_datacenter,
            "datacenter of this agent, its member tag dc (default: none)",
        ),
        Setting(
            "lease_time",
            _parse_float,
            _check_lease_time,
            "seconds a leader is elected for; the same on every server (default 10)",
        ),
        Setting(
            "beat_interval",
            _parse_float,
            _check_beat_interval,
            "seconds between a leader's renewals, at most half of lease_time (default 1)",
        ),
        Setting(
            "max_clock_skew",
            _parse_float,
            _check_max_clock_skew,
            "seconds voters add to a lease for clock drift (default 1)",
        ),
        Setting(
            "join",
            _parse_list,
            _check_join,
            "member to join at start, host or host:port (repeatable)",
        ),
        Setting("tags", _parse_tags, _check_tags, "tag of this member (repeatable)"),
        Setting(
            "data_dir",
            _parse_str,
            _no_check,
            "directory that keeps the snapshot, keys, ring nodes and epoch (default: none)",
        ),
        Setting(
            "encrypt",
            _parse_str,
            _check_encrypt,
            "base64 AES key that encrypts gossip; `controlplane keygen` prints one",
        ),
        Setting(
            "api_token",
            _parse_str,
            _check_token,
            "token with every API scope (prefer the environment or api_tokens_file:"
            " flags show in ps)",
        ),
        Setting(
            "api_tokens_file",
            _parse_str,
            _no_check,
            "file of API tokens and their scopes: read, write, operator (docs/security.md)",
        ),
        Setting(
            "tls_ca_file",
            _parse_str,
            _no_check,
            "PEM CA bundle that verifies peers' and clients' certificates",
        ),
        Setting(
            "tls_cert_file",
            _parse_str,
            _no_check,
            "PEM certificate of this agent; with tls_key_file, the gRPC port speaks TLS",
        ),
        Setting("tls_key_file", _parse_str, _no_check, "PEM private key of tls_cert_file"),
        Setting(
            "verify_incoming",
            _parse_bool,
            _no_check,
            "require a client certificate signed by tls_ca_file on every call (mTLS)",
        ),
        Setting(
            "verify_outgoing",
            _parse_bool,
            _no_check,
            "use TLS, verified against tls_ca_file, for this agent's own calls to peers",
        ),
        Setting(
            "verify_server_hostname",
            _parse_bool,
            _no_check,
            "also require peers' certificates to carry the server name (docs/security.md)",
        ),
        Setting("cluster_label", _parse_str, _check_label, "label every gossip frame must carry"),
        Setting(
            "log_level",
            _parse_str,
            _one_of(LOG_LEVELS),
            "debug, info, warning or error (default info)",
        ),
        Setting(
            "log_format",
            _parse_str,
            _one_of(LOG_FORMATS),
            "text, or json: one object per line with hclog's keys (default text)",
        ),
        Setting(
            "drain_period",
            _parse_float,
            _check_grace,
            "seconds tagged draining before leaving (default 2)",
        ),
        Setting(
            "shutdown_grace",
            _parse_float,
            _check_grace,
            "seconds in-flight RPCs get to finish on stop (default 5)",
        ),
        Setting(
            "loop_lag_interval",
            _parse_float,
            _check_loop_lag_interval,
            "seconds between loop-lag samples (default 0.5; each is a wake-up of an idle agent)",
        ),
        Setting(
            "event_loop",
            _parse_str,
            _one_of(EVENT_LOOPS),
            "auto (uvloop when installed), uvloop or asyncio (default auto)",
        ),
        Setting(
            "coalesce_period",
            _parse_float,
            _check_period,
            "seconds member events are gathered into one per type (Serf; default 0: off)",
        ),
        Setting(
            "quiescent_period",
            _parse_float,
            _check_period,
            "seconds without a member event that end a coalesce window early (default 0)",
        ),
        Setting(
            "user_coalesce_period",
            _parse_float,
            _check_period,
            "seconds user events fired with coalesce keep only the newest per name (default 3)",
        ),
        Setting(
            "user_quiescent_period",
            _parse_float,
            _check_period,
            "seconds without such an event that end the window early (default 1)",
        ),
        Setting(
            "retry_interval",
            _parse_float,
            _check_retry_interval,
            "seconds before the second join attempt; the wait doubles up to 30 s (default 1)",
        ),
        Setting(
            "retry_max",
            _parse_int,
            _check_retry_max,
            "join attempts before the agent exits 1 (default 0: retry forever, for orchestrators)",
        ),
        Setting(
            "leave_on_terminate",
            _parse_bool,
            _no_check,
            "on SIGTERM drain and leave gracefully; false: stop without leaving (default true)",
        ),
        Setting(
            "rejoin_after_leave",
            _parse_bool,
            _no_check,
            "at start rejoin the snapshot's members even after a graceful leave (default true)",
        ),
        Setting(
            "disable_tcp_pings",
            _parse_bool,
            _no_check,
            "never ping a member over TCP when its UDP probe goes unanswered (default false)",
        ),
        Setting(
            "reconnect_interval",
            _parse_float,
            _check_reconnect_interval,
            "seconds between attempts to reach failed members again (default 30)",
        ),
        Setting(
            "reconnect_timeout",
            _parse_float,
            _check_long_timeout,
            "seconds a failed member is retried before it is reaped (default 86400)",
        ),
        Setting(
            "tombstone_timeout",
            _parse_float,
            _check_long_timeout,
            "seconds a member that left is kept as left before it is reaped (default 86400)",
        ),
        Setting(
            "rings",
            _parse_rings,
            _no_check,
            "placement of a named ring, NAME.KEY=VALUE with KEY vnodes, points_per_vnode,"
            " vnode_formula or lookup (repeatable; docs/ring.md)",
        ),
        Setting(
            "disable_coordinates",
            _parse_bool,
            _no_check,
            "compute no network coordinates: no rtt estimates, no near ordering (default false)",
        ),
        Setting(
            "query_handlers",
            _parse_query_handlers,
            _no_check,
            "query handler NAME=COMMAND, NAME a query name or *; the command runs without a"
            " shell, payload on stdin, stdout is the response (repeatable; docs/queries.md)",
        ),
        Setting(
            "query_handler_timeout",
            _parse_float,
            _check_handler_timeout,
            "seconds a query handler may run before it is killed (default 5)",
        ),
        Setting(
            "metrics_addr",
            _parse_str,
            _check_metrics_addr,
            "IP:port of the Prometheus /metrics listener, e.g. 127.0.0.1:9464 (default: off)",
        ),
    )
}
assert set(SETTINGS) == {f.name for f in fields(AgentConfig)}


def environment_warnings(environ: Mapping[str, str]) -> list[str]:
    """One line per CONTROLPLANE_* variable that nothing reads (a typo, most likely):
    the agent reads its settings and ignores the rest, so a mistyped name would
    otherwise pass silently. Each line names the closest known name and lists them all."""
    known = sorted([setting.env for setting in SETTINGS.values()] + list(OTHER_ENVIRONMENT))
    warnings = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        import difflib  # only for a variable that is not a setting

        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(
            f"warning: environment variable {name} is not a setting and is ignored{hint};"
            f" known: {', '.join(known)}"
        )
    return warnings


def _apply(values: dict[str, Any], name: str, raw: object, source: str) -> None:
    setting = SETTINGS.get(name)
    if setting is None:
        known = ", ".join(sorted(SETTINGS))
        raise ConfigError(f"{source}: unknown key {name!r} (known keys: {known})")
    try:
        value = setting.parse(raw)
        setting.check(value)
    except ValueError as error:
        raise ConfigError(f"{source}: {name} {error}") from None
    values[name] = value


def load_file(path: str | Path) -> dict[str, object]:
    """Reads a TOML file into raw values; a missing or malformed file is a ConfigError."""
    import tomllib  # only an agent with a config file needs the parser

    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except OSError as error:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text") from None


# A DNS name (RFC 1123 labels): what a certificate can carry and gRPC can expect.
_DNS_NAME_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")


def tls_server_name(cluster_label: str) -> str:
    """The DNS name servers' certificates carry under verify_server_hostname: Consul's
    `server.<datacenter>.<domain>`, with the cluster label as the datacenter."""
    return f"server.{cluster_label or 'controlplane'}"


def check_tls(config: AgentConfig) -> None:
    """Refuses TLS settings that cannot work together (the files are read at start)."""
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        given, missing = (
            ("tls_cert_file", "tls_key_file")
            if config.tls_cert_file
            else ("tls_key_file", "tls_cert_file")
        )
        raise ConfigError(f"{given} is set but {missing} is not: give both")
    if config.verify_incoming and not config.tls_cert_file:
        raise ConfigError(
            "verify_incoming needs tls_cert_file and tls_key_file: client certificates"
            " are asked for in a TLS handshake"
        )
    if config.verify_incoming and not config.tls_ca_file:
        raise ConfigError(
            "verify_incoming needs tls_ca_file, the CA that signs client certificates"
        )
    for name in ("verify_outgoing", "verify_server_hostname"):
        if getattr(config, name) and not config.tls_ca_file:
            raise ConfigError(f"{name} needs tls_ca_file, the CA that signs peers' certificates")
    if config.verify_server_hostname:
        name = tls_server_name(config.cluster_label)
        if not _DNS_NAME_RE.fullmatch(name):
            raise ConfigError(
                f"verify_server_hostname expects peers' certificates to name {name!r},"
                " which is not a DNS name: use a cluster_label of letters, digits,"
                " '-' and '.'"
            )


def build_config(
    *,
    file_values: Mapping[str, object] | None = None,
    file_name: str = "config file",
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
) -> AgentConfig:
    """Merges the sources in precedence order and validates every value."""
    values: dict[str, Any] = {}
    for name, raw in (file_values or {}).items():
        _apply(values, name, raw, file_name)
    # Other CONTROLPLANE_* variables exist (OTHER_ENVIRONMENT), so only the agent's own
    # names are read here; `environment_warnings` names the ones nothing reads.
    for setting in SETTINGS.values():
        if environ is not None and setting.env in environ:
            _apply(values, setting.name, environ[setting.env], f"environment {setting.env}")
    for name, raw in (flags or {}).items():
        _apply(values, name, raw, f"flag {SETTINGS[name].flag}")
    config = replace(AgentConfig(), **values)
    check_tls(config)
    check_coalescing(config)
    check_election(config)
    return config
