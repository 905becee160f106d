"""The client-side server pool: which server to talk to next, and when to move on.

This module owns :class:`ServerPool`, the bookkeeping behind the client's
failover, built on Consul's client ``Manager`` (``agent/router/manager.go``) and
Nomad's client ``RPCProxy`` (``client/rpcproxy/rpcproxy.go``):

* ``find_server`` returns the head of the list; ``notify_failed_server`` moves
  the failed server to the end, but only if it is still the head, so a burst of
  failures from concurrent calls rotates once rather than once per call
  (Consul's manager compares the failed server with the current head).
* ``rebalance`` shuffles, pings in order until one server answers and commits
  the new order only then; if nobody answers the pool is marked offline and the
  old order kept (Consul ``RebalanceServers``).
* primaries come from heartbeat responses (``refresh_server_lists``), backups
  from configuration (``set_backup_servers``); servers with an incompatible API
  version are filtered out (Nomad ``RefreshServerLists``).

Beyond Consul and Nomad: outlier ejection after consecutive failures (Envoy's
defaults, see :mod:`controlplane.pool.outlier`), servers that announce
``draining`` sink behind every other server, and re-discovery from seed
addresses through an injected resolver when no known server is left; and
nearest-first ordering by estimated round trip (Consul's ``?near=``,
:func:`nearest_first`): with distances set (``set_distances``) a rebalance
shuffles only among servers at equal distance.

The pool is pure: it reads no clock (``now`` is passed in, seconds on a
monotonic clock), draws randomness only from the injected ``random.Random``,
and does no I/O. A rebalance is a plan (``plan_rebalance``: whom to ping, in
order) and the ping results handed back as data (``apply_pings``); a
re-discovery is the seeds to resolve (``seeds_to_resolve``) and their answers
handed back (``apply_resolution``). ``rebalance`` (with a pinger) and
``rediscover`` (with a resolver) are conveniences that call the callables in
between. It is not thread-safe; callers that share one pool between threads
hold a lock around it.
"""

from __future__ import annotations

import dataclasses
import enum
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from controlplane.pool.errors import (
    InvalidConfigError,
    InvalidCountError,
    InvalidServerError,
    PoolInputError,
)
from controlplane.pool.interval import rebalance_interval
from controlplane.pool.outlier import EjectionPolicy, ServerHealth, check_now
from controlplane.pool.server import ApiVersion, Server, is_api_compatible, parse_address

__all__ = [
    "Distances",
    "FailureVerdict",
    "PingResults",
    "Pinger",
    "PoolConfig",
    "RebalancePlan",
    "RebalanceResult",
    "RediscoveryResult",
    "RefreshResult",
    "Resolution",
    "Resolver",
    "SeedFailure",
    "ServerPool",
    "nearest_first",
]

Distances = Mapping[str, float]
"""Estimated round trip in seconds to each server, by server name; a server not in
the mapping has an unknown distance."""

Pinger = Callable[[Server], bool]
"""Checks one server; returns True if it answered. Exceptions propagate."""

Resolver = Callable[[str], Sequence[str]]
"""Resolves one seed (e.g. a DNS ``host:port``) to ``host:port`` addresses.

Raising ``OSError`` (``socket.gaierror`` included) or ``ValueError`` marks that
seed as failed for this round; other seeds are still tried.
"""

PingResults = Mapping[Server, bool] | Mapping[str, bool] | Iterable[tuple[Server | str, bool]]
"""What ``apply_pings`` takes: whether each pinged server answered, keyed by the
server (or its name), as a mapping or as ``(server, answered)`` pairs."""

Resolution = Sequence[str] | OSError | ValueError
"""What one seed resolved to, for ``apply_resolution``: its ``host:port``
addresses, or the ``OSError``/``ValueError`` that resolving it raised."""


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Settings of one pool. Immutable.

    Attributes:
        client_api_version: the API version this client speaks; servers are kept
            only if :func:`~controlplane.pool.server.is_api_compatible`.
        ejection: the outlier-ejection policy (Envoy defaults).
        seed_addresses: ``host:port`` names re-resolved on every re-discovery,
            typically a DNS name that lists the servers.
        datacenter: the caller's datacenter. When set, servers that a heartbeat
            lists in another datacenter become backups, not primaries (Nomad's
            rule), so a shuffle never sends the caller across datacenters while
            a local server answers. Servers without a datacenter count as local.
    """

    client_api_version: ApiVersion = field(default_factory=lambda: ApiVersion(1, 0))
    ejection: EjectionPolicy = field(default_factory=EjectionPolicy)
    seed_addresses: tuple[str, ...] = ()
    datacenter: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.client_api_version, ApiVersion):
            raise InvalidConfigError(
                "client_api_version",
                f"must be an ApiVersion, got {self.client_api_version!r}",
            )
        if not isinstance(self.ejection, EjectionPolicy):
            raise InvalidConfigError(
                "ejection", f"must be an EjectionPolicy, got {self.ejection!r}"
            )
        if isinstance(self.seed_addresses, str):
            raise InvalidConfigError(
                "seed_addresses", "must be a sequence of 'host:port' strings, got one string"
            )
        if not isinstance(self.datacenter, str):
            raise InvalidConfigError("datacenter", f"must be a string, got {self.datacenter!r}")
        seeds = tuple(self.seed_addresses)
        for index, seed in enumerate(seeds):
            parse_address(seed, field=f"seed_addresses[{index}]")
        # Keep the first occurrence of each seed, in order.
        object.__setattr__(self, "seed_addresses", tuple(dict.fromkeys(seeds)))


class FailureVerdict(enum.Enum):
    """What ``notify_failed_server`` did with a reported failure."""

    IGNORED = "ignored"
    """The server is unknown to the pool, or already ejected."""
    COUNTED = "counted"
    """The failure was counted; the server was not the head, so the order stands."""
    ROTATED = "rotated"
    """The server was the head and moved to the end of its list."""
    EJECTED = "ejected"
    """The failure reached the ejection threshold and the server was ejected."""


@dataclass(frozen=True, slots=True)
class RebalanceResult:
    """The outcome of one ``rebalance``.

    Attributes:
        head: the server that answered and now heads the pool, or ``None``.
        pinged: the servers pinged, in order (the last one answered on success).
        failed: the servers that did not answer, in ping order.
        offline: True when no server answered (the old order was kept).
    """

    head: Server | None
    pinged: tuple[Server, ...]
    failed: tuple[Server, ...]
    offline: bool

    @property
    def succeeded(self) -> bool:
        return self.head is not None


@dataclass(frozen=True, slots=True)
class RebalancePlan:
    """A shuffled order to ping, made by `plan_rebalance` for `commit_rebalance`."""

    ping_order: tuple[Server, ...]
    tiers: tuple[_Tier, ...]
    shuffled_primaries: tuple[Server, ...]
    shuffled_backups: tuple[Server, ...]


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """The outcome of one ``refresh_server_lists``.

    Attributes:
        added: primaries that were not known before (in their new order).
        removed: primaries that the new list no longer contains.
        incompatible: servers dropped by the API-version filter.
    """

    added: tuple[Server, ...]
    removed: tuple[Server, ...]
    incompatible: tuple[Server, ...]


@dataclass(frozen=True, slots=True)
class SeedFailure:
    """A seed that could not be resolved, or produced an unusable address."""

    seed: str
    reason: str


@dataclass(frozen=True, slots=True)
class RediscoveryResult:
    """The outcome of one ``rediscover``.

    Attributes:
        resolved: every address the seeds resolved to, in resolution order.
        added: servers new to the pool, added as primaries.
        failures: seeds that failed to resolve or returned a malformed address.
    """

    resolved: tuple[str, ...]
    added: tuple[Server, ...]
    failures: tuple[SeedFailure, ...]


class _Tier(enum.IntEnum):
    """Selection preference; lower is preferred. The order is the design's rules:
    backups only when no primary is usable, draining servers only when nothing
    else is left."""

    PRIMARY = 0
    BACKUP = 1
    DRAINING_PRIMARY = 2
    DRAINING_BACKUP = 3


def _tier_of(server: Server, is_primary: bool) -> _Tier:
    if server.draining:
        return _Tier.DRAINING_PRIMARY if is_primary else _Tier.DRAINING_BACKUP
    return _Tier.PRIMARY if is_primary else _Tier.BACKUP


def _check_server(value: object, field_name: str) -> Server:
    if not isinstance(value, Server):
        raise InvalidServerError(field_name, f"must be a Server, got {value!r}")
    return value


def _dedupe_by_name(servers: Iterable[Server]) -> list[Server]:
    """First occurrence of each name wins; a repeated name is a sender's mistake."""
    unique: dict[str, Server] = {}
    for server in servers:
        unique.setdefault(server.name, server)
    return list(unique.values())


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_NamedT = TypeVar("_NamedT", bound=_Named)


def nearest_first(servers: Iterable[_NamedT], distances: Distances) -> list[_NamedT]:
    """``servers`` nearest first, those of unknown distance after them (Consul's
    sortNodesByDistanceFrom). The sort is stable: servers at equal distance, and
    those of unknown distance, keep their order, so a shuffle done before survives
    within each group of equal distance."""
    unknown = float("inf")
    return sorted(servers, key=lambda server: distances.get(server.name, unknown))


_NOTHING_REFRESHED = RefreshResult(added=(), removed=(), incompatible=())


class ServerPool:
    """An ordered pool of servers for one client, with primaries and backups.

    Selection order (``candidates``), each group in its stored order:

    1. primaries that are neither ejected nor draining;
    2. backups that are neither ejected nor draining (only reached when group 1
       is empty or was found unreachable by the last rebalance);
    3. draining primaries, then 4. draining backups.

    Ejected servers are never selected until their ejection time has passed.
    A group whose every member failed the ping in the last successful rebalance
    is moved behind the others until one of its members succeeds again or new
    servers join it; this keeps a backup that answered at the head while the
    primaries that did not answer wait.
    """

    def __init__(self, config: PoolConfig | None = None, *, rng: random.Random) -> None:
        if config is not None and not isinstance(config, PoolConfig):
            raise InvalidConfigError("config", f"must be a PoolConfig or None, got {config!r}")
        if not isinstance(rng, random.Random):
            raise InvalidConfigError("rng", f"must be a random.Random, got {rng!r}")
        self._config = config if config is not None else PoolConfig()
        self._rng = rng
        self._primaries: list[Server] = []
        self._backups: list[Server] = []
        # Backups that the last heartbeat listed in another datacenter, by name.
        self._remote_names: set[str] = set()
        self._health: dict[str, ServerHealth] = {}
        self._demoted_tiers: set[_Tier] = set()
        # Consul's manager starts offline and leaves that state when a server is
        # added or a rebalance finds one that answers.
        self._offline = True
        self._num_nodes = 0
        self._leader_address: str | None = None
        self._last_refreshed_at: float | None = None
        self._distances: Distances = {}

    # ----------------------------------------------------------------- reading

    @property
    def config(self) -> PoolConfig:
        return self._config

    @property
    def is_offline(self) -> bool:
        """True before any server is known and after a rebalance in which no
        server answered; cleared when a server is added, a heartbeat brings a
        non-empty list, a call succeeds or a rebalance finds one that answers."""
        return self._offline

    @property
    def num_servers(self) -> int:
        """Distinct servers known (primaries and backups), usable or not."""
        return len(self._known())

    @property
    def num_nodes(self) -> int:
        """Cluster size from the last heartbeat response (0 before any)."""
        return self._num_nodes

    @property
    def leader_address(self) -> str | None:
        """The leader's address from the last heartbeat response, if it named one."""
        return self._leader_address

    @property
    def last_refreshed_at(self) -> float | None:
        """The ``now`` of the last ``refresh_server_lists``, or ``None``."""
        return self._last_refreshed_at

    def servers(self) -> tuple[Server, ...]:
        """Every known server in stored order: primaries, then backups that are not
        also primaries. Includes ejected and draining servers."""
        return tuple(server for server, _ in self._known())

    def primary_servers(self) -> tuple[Server, ...]:
        return tuple(self._primaries)

    def backup_servers(self) -> tuple[Server, ...]:
        return tuple(self._backups)

    def candidates(self, now: float) -> tuple[Server, ...]:
        """Selectable servers in the order the pool would offer them, head first."""
        now = check_now(now)
        return tuple(server for server, _ in self._ranked(now))

    def find_server(self, now: float, datacenter: str | None = None) -> Server | None:
        """The server to use next (the head), or ``None`` if none is selectable;
        with ``datacenter``, the first selectable server of that datacenter."""
        now = check_now(now)
        if datacenter is not None:
            return next((s for s in self.candidates(now) if s.datacenter == datacenter), None)
        # The head of `_ranked` without sorting: every call asks for it.
        head: Server | None = None
        head_rank: tuple[bool, _Tier] | None = None
        demoted, health = self._demoted_tiers, self._health
        for server, is_primary in self._known():
            if health[server.name].is_ejected(now):
                continue
            tier = _tier_of(server, is_primary)
            rank = (tier in demoted, tier)
            if head_rank is None or rank < head_rank:
                head, head_rank = server, rank
        return head

    def is_ejected(self, server: Server | str, now: float) -> bool:
        now = check_now(now)
        health = self._health.get(self._name_of(server))
        return health is not None and health.is_ejected(now)

    def ejected_servers(self, now: float) -> tuple[Server, ...]:
        now = check_now(now)
        return tuple(s for s, _ in self._known() if self._health[s.name].is_ejected(now))

    def consecutive_failures(self, server: Server | str) -> int:
        health = self._health.get(self._name_of(server))
        return 0 if health is None else health.consecutive_failures

    def needs_rediscovery(self, now: float) -> bool:
        """True when no known server can be selected or the last rebalance found
        none answering: the moment to re-resolve the seeds (``rediscover``)."""
        return self._offline or self.find_server(now) is None

    def next_rebalance_interval(self) -> float:
        """Seconds until the next rebalance, sized to the cluster (Consul's
        ``refreshServerRebalanceTimer``), jittered from the pool's rng."""
        return rebalance_interval(self.num_servers, self._num_nodes, self._rng)

    # ---------------------------------------------------------------- feedback

    def notify_failed_server(self, server: Server, now: float) -> FailureVerdict:
        """Report that a call to ``server`` failed.

        The failure counts toward ejection whatever the server's position. The
        server moves to the end of its list only if it is still the head: when
        several in-flight calls fail on the same server, the first report rotates
        and the rest leave the new head alone. Unknown servers are ignored.
        """
        now = check_now(now)
        name = _check_server(server, "server").name
        health = self._health.get(name)
        if health is None or health.is_ejected(now):
            return FailureVerdict.IGNORED
        failures = health.record_failure()

        head = self.find_server(now)
        rotated = False
        if head is not None and head.name == name:
            rotated = self._rotate_to_end(name)

        policy = self._config.ejection
        if (
            policy.consecutive_failures is not None
            and failures >= policy.consecutive_failures
            and policy.may_eject(len(self.ejected_servers(now)), self.num_servers)
        ):
            health.eject(now, policy)
            return FailureVerdict.EJECTED
        return FailureVerdict.ROTATED if rotated else FailureVerdict.COUNTED

    def notify_success(self, server: Server, now: float) -> bool:
        """Report that a call to ``server`` succeeded: its failure count restarts,
        its group is no longer held back by an earlier failed rebalance ping, and
        the pool is online. Returns False if the server is unknown."""
        now = check_now(now)
        name = _check_server(server, "server").name
        health = self._health.get(name)
        if health is None:
            return False
        health.record_success()
        stored, is_primary = self._lookup(name)
        self._demoted_tiers.discard(_tier_of(stored, is_primary))
        self._offline = False
        return True

    # -------------------------------------------------------------- membership

    def add_server(self, server: Server) -> bool:
        """Add a primary, or update the details of a known one in place.

        New servers go to the end, so they see traffic after a rebalance or after
        the servers ahead of them fail (Consul ``AddServer``). Returns False, and
        changes nothing, if the server's API version is incompatible.
        """
        server = _check_server(server, "server")
        if not is_api_compatible(self._config.client_api_version, server.api_version):
            return False
        for index, existing in enumerate(self._primaries):
            if existing.name == server.name:
                self._primaries[index] = server
                break
        else:
            self._primaries.append(server)
            self._demoted_tiers.discard(_Tier.PRIMARY)
        self._health.setdefault(server.name, ServerHealth())
        self._replace_backup_details(server)
        # Consul: "Assume we are no longer offline since we've just seen a new server."
        self._offline = False
        return True

    def remove_server(self, server: Server | str) -> bool:
        """Forget a server (by name) from both lists. Returns False if unknown."""
        name = self._name_of(server)
        before = len(self._primaries) + len(self._backups)
        self._primaries = [s for s in self._primaries if s.name != name]
        self._backups = [s for s in self._backups if s.name != name]
        self._health.pop(name, None)
        return len(self._primaries) + len(self._backups) != before

    def set_draining(self, server: Server | str, draining: bool = True) -> bool:
        """Mark a known server as draining (or no longer). Returns False if unknown."""
        name = self._name_of(server)
        if name not in self._health:
            return False
        self._primaries = [_with_draining(s, draining, name) for s in self._primaries]
        self._backups = [_with_draining(s, draining, name) for s in self._backups]
        return True

    def refresh_server_lists(
        self,
        servers: Sequence[Server],
        num_nodes: int,
        leader_address: str | None,
        now: float,
    ) -> RefreshResult:
        """Replace the primaries with the list from a heartbeat response.

        * Servers whose API version is incompatible are dropped and reported.
        * Servers that stay keep their relative order (and their failure and
          ejection history), with their details refreshed, so a heartbeat does
          not undo the last rebalance or rotation.
        * New servers are appended in a random order drawn from the pool's rng,
          so clients that receive the same list do not all fall over to the same
          newcomer (Consul and Nomad append new servers in Go map order, which
          is random).
        * Servers missing from the list are removed at once (Nomad).
        * Backups are left alone: unlike Nomad, which clears its backups when a
          heartbeat lists a server, configured backups stay as the fallback for
          the day the primaries are gone.

        ``num_nodes`` and ``leader_address`` are stored (``leader_address`` empty
        or ``None`` means no known leader).
        """
        now = check_now(now)
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 0:
            raise InvalidCountError("num_nodes", f"must be an integer >= 0, got {num_nodes!r}")
        if leader_address and leader_address != self._leader_address:
            # The stored address was checked when it came.
            parse_address(leader_address, field="leader_address")
        if self._is_repeat(servers):
            # The list the last refresh installed, the very objects in any order: the
            # general path below would keep every primary where it is and change
            # nothing else (heartbeats repeat their list, so this is the usual case).
            if servers:
                self._offline = False
            self._num_nodes = num_nodes
            self._leader_address = leader_address or None
            self._last_refreshed_at = now
            return _NOTHING_REFRESHED
        checked = [_check_server(s, f"servers[{i}]") for i, s in enumerate(servers)]

        client_version = self._config.client_api_version
        compatible = _dedupe_by_name(
            s for s in checked if is_api_compatible(client_version, s.api_version)
        )
        incompatible = tuple(
            s for s in checked if not is_api_compatible(client_version, s.api_version)
        )

        datacenter = self._config.datacenter
        if datacenter:
            remote = [s for s in compatible if s.datacenter and s.datacenter != datacenter]
            if remote or self._remote_names:
                local = [s for s in compatible if not s.datacenter or s.datacenter == datacenter]
                compatible = local
                self._merge_remote_backups(remote)
        incoming = {s.name: s for s in compatible}
        current_names = {s.name for s in self._primaries}
        kept = [incoming[s.name] for s in self._primaries if s.name in incoming]
        removed = tuple(s for s in self._primaries if s.name not in incoming)
        added = [s for s in compatible if s.name not in current_names]
        self._rng.shuffle(added)

        self._primaries = kept + added
        for server in kept + added:
            self._health.setdefault(server.name, ServerHealth())
            self._replace_backup_details(server)
        self._forget_unknown_health()

        if added:
            # New primaries deserve a try even if the old ones failed the last ping.
            self._demoted_tiers.discard(_Tier.PRIMARY)
        if compatible:
            # A heartbeat response that lists servers proves one of them answered.
            self._offline = False
        self._num_nodes = num_nodes
        self._leader_address = leader_address or None
        self._last_refreshed_at = now
        return RefreshResult(added=tuple(added), removed=removed, incompatible=incompatible)

    def set_backup_servers(self, servers: Sequence[Server]) -> tuple[Server, ...]:
        """Replace the backups (servers used only while no primary is usable).

        Servers with an incompatible API version are dropped; the dropped ones are
        returned. A backup that is also a primary is selected as a primary.
        """
        checked = [_check_server(s, f"servers[{i}]") for i, s in enumerate(servers)]
        client_version = self._config.client_api_version
        self._backups = _dedupe_by_name(
            s for s in checked if is_api_compatible(client_version, s.api_version)
        )
        for server in self._backups:
            self._health.setdefault(server.name, ServerHealth())
        self._forget_unknown_health()
        self._demoted_tiers.discard(_Tier.BACKUP)
        if self._backups:
            self._offline = False
        return tuple(s for s in checked if not is_api_compatible(client_version, s.api_version))

    # --------------------------------------------------------------- rebalance

    def rebalance(self, pinger: Pinger, now: float) -> RebalanceResult:
        """Shuffle, ping until one server answers, then commit the new order.

        Primaries and backups are shuffled independently (Nomad). Servers are
        pinged in selection-group order (healthy primaries, healthy backups,
        draining primaries, draining backups); ejected servers are skipped. The
        first server that answers heads its list and the servers that did not
        answer go to the end of theirs (Consul cycles each failed server to the
        end). Groups in which every pinged member failed are held back behind the
        others until one of their members succeeds again.

        If nobody answers, the pool is marked offline and the previous order is
        kept untouched (Consul). A pinger that raises leaves the pool unchanged.

        This is `plan_rebalance` and `apply_pings` with the pings in between;
        callers that ping elsewhere (asynchronously, or all at once) use those two
        directly.
        """
        plan = self.plan_rebalance(now)
        results: list[tuple[Server, bool]] = []
        for server in plan.ping_order:
            answered = bool(pinger(server))
            results.append((server, answered))
            if answered:
                break
        return self.apply_pings(plan, results, now)

    def set_distances(self, distances: Distances) -> None:
        """Estimated round trips to servers (seconds, by name; empty: none known).
        Rebalances then order servers nearest first and shuffle only among those at
        equal distance; servers of unknown distance come after the others."""
        checked: dict[str, float] = {}
        for name, seconds in distances.items():
            if not isinstance(seconds, int | float) or not 0.0 <= seconds < float("inf"):
                raise InvalidServerError("distances", f"{name!r}: must be seconds >= 0")
            checked[name] = float(seconds)
        self._distances = checked

    def find_nearest(
        self, now: float, distances: Distances, datacenter: str | None = None
    ) -> Server | None:
        """Like `find_server`, but within the most preferred group of selectable
        servers (primaries, then backups, then draining) the nearest one; servers
        of unknown distance only when no server of that group has a known one."""
        now = check_now(now)
        demoted = self._demoted_tiers
        ranked = [
            entry
            for entry in self._ranked(now)
            if datacenter is None or entry[0].datacenter == datacenter
        ]
        if not ranked:
            return None
        best = min((tier in demoted, tier) for _, tier in ranked)
        group = [server for server, tier in ranked if (tier in demoted, tier) == best]
        return nearest_first(group, distances)[0]

    def plan_rebalance(self, now: float) -> RebalancePlan:
        """The shuffled order to ping in (``ping_order``); nothing changes until the
        results come back through `apply_pings` (or `commit_rebalance`). With
        distances set, the order is nearest first, shuffled among equal distances."""
        check_now(now)
        shuffled_primaries = list(self._primaries)
        self._rng.shuffle(shuffled_primaries)
        shuffled_backups = list(self._backups)
        self._rng.shuffle(shuffled_backups)
        if self._distances:
            shuffled_primaries = nearest_first(shuffled_primaries, self._distances)
            shuffled_backups = nearest_first(shuffled_backups, self._distances)
        primary_names = {s.name for s in shuffled_primaries}
        entries = [(s, _tier_of(s, True)) for s in shuffled_primaries] + [
            (s, _tier_of(s, False)) for s in shuffled_backups if s.name not in primary_names
        ]
        ping_order = sorted(
            (entry for entry in entries if not self._health[entry[0].name].is_ejected(now)),
            key=lambda entry: entry[1],
        )
        return RebalancePlan(
            ping_order=tuple(server for server, _ in ping_order),
            tiers=tuple(tier for _, tier in ping_order),
            shuffled_primaries=tuple(shuffled_primaries),
            shuffled_backups=tuple(shuffled_backups),
        )

    def commit_rebalance(
        self, plan: RebalancePlan, answers: Sequence[bool], now: float
    ) -> RebalanceResult:
        """Applies the ping `answers` (in `plan.ping_order`, stopping at the first
        True) to the pool. Servers added or removed since the plan are respected:
        the shuffled order applies to those still present, new ones follow."""
        check_now(now)
        if len(answers) > len(plan.ping_order):
            raise InvalidCountError("answers", "at most one answer per planned ping")
        pinged = plan.ping_order[: len(answers)]
        answered_at = next((i for i, ok in enumerate(answers) if ok), None)
        if answered_at is not None:
            pinged = pinged[: answered_at + 1]
        failed = [
            (server, tier)
            for server, tier, ok in zip(pinged, plan.tiers, answers, strict=False)
            if not ok
        ]
        failed_servers = tuple(server for server, _ in failed)
        if answered_at is None:
            self._offline = True
            return RebalanceResult(head=None, pinged=pinged, failed=failed_servers, offline=True)

        head, head_tier = plan.ping_order[answered_at], plan.tiers[answered_at]
        failed_names = [server.name for server in failed_servers]
        self._primaries = _commit_order(
            _reconcile(plan.shuffled_primaries, self._primaries), head.name, failed_names
        )
        self._backups = _commit_order(
            _reconcile(plan.shuffled_backups, self._backups), head.name, failed_names
        )
        # Every group ahead of the head's was pinged in full and failed.
        self._demoted_tiers = {tier for _, tier in failed if tier < head_tier}
        if head.name in self._health:
            self._health[head.name].record_success()
        self._offline = False
        return RebalanceResult(head=head, pinged=pinged, failed=failed_servers, offline=False)

    def apply_pings(self, plan: RebalancePlan, results: PingResults, now: float) -> RebalanceResult:
        """Applies the results of the pings of `plan` to the pool: the data half of
        `rebalance`, for callers that do the pings themselves, one after another
        until one answers or all at once.

        `results` says whether each pinged server answered, keyed by server (or
        name); their order does not matter, the plan's does. Walking
        ``plan.ping_order``:

        * a server that has left the pool since the plan is skipped, its result
          dropped: a stale answer cannot head a list that no longer holds it;
        * the first server that answered heads its list and those before it that
          did not answer go to the end of theirs, as in `rebalance`; results for
          servers after it are not used (they keep their shuffled place);
        * if every planned server still in the pool failed (or nothing could be
          planned), the pool is marked offline and keeps its order;
        * otherwise the results stop short of an answer (a server still in the
          pool has no result and none before it answered, or every planned server
          has left the pool): the round proves nothing and the pool is unchanged,
          as when a pinger raises. The result has no head, and ``offline`` is the
          pool's flag as it stands.

        A result for a server the plan does not hold, two results for one server,
        or an answer that is not a bool raise `InvalidServerError`.
        """
        check_now(now)
        answered_by_name = _ping_results(plan, results)
        current = {server.name: server for server, _ in self._known()}
        order: list[Server] = []
        tiers: list[_Tier] = []
        answers: list[bool] = []
        complete = True
        for server, tier in zip(plan.ping_order, plan.tiers, strict=True):
            if server.name not in current:
                continue
            answered = answered_by_name.get(server.name)
            if answered is None:
                complete = False
                break
            order.append(current[server.name])
            tiers.append(tier)
            answers.append(answered)
            if answered:
                break
        if plan.ping_order and not any(answers) and not (complete and order):
            failed = tuple(order)
            return RebalanceResult(head=None, pinged=failed, failed=failed, offline=self._offline)
        still_present = dataclasses.replace(plan, ping_order=tuple(order), tiers=tuple(tiers))
        return self.commit_rebalance(still_present, answers, now)

    # ------------------------------------------------------------- rediscovery

    def rediscover(self, resolver: Resolver, now: float) -> RediscoveryResult:
        """Re-resolve every seed and add the addresses not yet known as primaries.

        Seeds are resolved afresh on every call (DNS answers change as servers are
        replaced). A new address becomes a server named after its address, with an
        unknown API version, appended in a random order; the next heartbeat
        replaces it with the server's real record. Addresses already known (as any
        server's address) are left as they are, ejection included.

        This is `seeds_to_resolve` and `apply_resolution` with the resolving in
        between; callers that resolve elsewhere (off the event loop, concurrently)
        use those two directly.
        """
        resolutions: dict[str, Resolution] = {}
        for seed in self.seeds_to_resolve(now):
            try:
                resolutions[seed] = list(resolver(seed))
            except (OSError, ValueError) as error:
                resolutions[seed] = error
        return self.apply_resolution(resolutions, now)

    def seeds_to_resolve(self, now: float) -> tuple[str, ...]:
        """The seeds a re-discovery resolves, in order: every configured seed, every
        time. Resolve them, then hand the answers to `apply_resolution`."""
        check_now(now)
        return self._config.seed_addresses

    def apply_resolution(
        self, resolutions: Mapping[str, Resolution], now: float
    ) -> RediscoveryResult:
        """Adds the addresses the seeds resolved to: the data half of `rediscover`.

        `resolutions` maps a seed to its ``host:port`` addresses, or to the
        ``OSError`` (``socket.gaierror`` included) or ``ValueError`` resolving it
        raised. Seeds are taken in configured order whatever the mapping's. A
        failed seed, a configured seed missing from `resolutions` ("<seed> did not
        resolve") and each malformed address are reported in ``failures``; the
        other seeds and addresses still count. New addresses join as primaries as
        in `rediscover`.

        A key that is not a configured seed, or a value that is a string or
        neither addresses nor an error, raises `PoolInputError` and changes
        nothing.
        """
        now = check_now(now)
        seeds = self._config.seed_addresses
        if not isinstance(resolutions, Mapping):
            raise PoolInputError(
                "resolutions", f"must be a mapping of seed to addresses, got {resolutions!r}"
            )
        unknown = [seed for seed in resolutions if seed not in seeds]
        if unknown:
            raise PoolInputError(
                "resolutions", f"{unknown[0]!r} is not one of the pool's seed_addresses"
            )
        known_addresses = {s.address for s, _ in self._known()}
        resolved: list[str] = []
        added: list[Server] = []
        failures: list[SeedFailure] = []
        for seed in seeds:
            if seed not in resolutions:
                failures.append(SeedFailure(seed=seed, reason=f"{seed} did not resolve"))
                continue
            resolution = resolutions[seed]
            if isinstance(resolution, (OSError, ValueError)):
                reason = str(resolution) or type(resolution).__name__
                failures.append(SeedFailure(seed=seed, reason=reason))
                continue
            for address in _addresses_of(seed, resolution):
                try:
                    server = Server.from_address(address)
                except PoolInputError as error:
                    failures.append(SeedFailure(seed=seed, reason=str(error)))
                    continue
                resolved.append(address)
                if address in known_addresses:
                    continue
                known_addresses.add(address)
                added.append(server)
        # A server elsewhere named like this address keeps its name; skip the newcomer.
        added = [server for server in added if server.name not in self._health]
        self._rng.shuffle(added)
        for server in added:
            self._primaries.append(server)
            self._health[server.name] = ServerHealth()
        if added:
            self._demoted_tiers.discard(_Tier.PRIMARY)
            self._offline = False
        return RediscoveryResult(
            resolved=tuple(resolved), added=tuple(added), failures=tuple(failures)
        )

    # ---------------------------------------------------------------- internals

    def _known(self) -> list[tuple[Server, bool]]:
        """(server, is_primary) for every distinct server, primaries first."""
        primary_names = {s.name for s in self._primaries}
        return [(s, True) for s in self._primaries] + [
            (s, False) for s in self._backups if s.name not in primary_names
        ]

    def _ranked(self, now: float) -> list[tuple[Server, _Tier]]:
        entries = [
            (server, _tier_of(server, is_primary))
            for server, is_primary in self._known()
            if not self._health[server.name].is_ejected(now)
        ]
        # sorted() is stable, so each group keeps its stored (rotation) order.
        return sorted(entries, key=lambda entry: (entry[1] in self._demoted_tiers, entry[1]))

    def _lookup(self, name: str) -> tuple[Server, bool]:
        for server, is_primary in self._known():
            if server.name == name:
                return server, is_primary
        raise KeyError(name)

    def _rotate_to_end(self, name: str) -> bool:
        in_primaries = any(s.name == name for s in self._primaries)
        servers = self._primaries if in_primaries else self._backups
        if len(servers) < 2:
            return False
        index = next(i for i, s in enumerate(servers) if s.name == name)
        servers.append(servers.pop(index))
        return True

    def _is_repeat(self, servers: Sequence[Server]) -> bool:
        """True if `servers` are the current primaries themselves (the same objects,
        in any order) and the backups named like primaries hold their details.

        Every primary is compatible, has a health entry and a name of its own, so a
        refresh with such a list keeps the primaries in their order and adds,
        removes, drops and forgets nothing."""
        primaries = self._primaries
        if len(servers) != len(primaries) or (self._backups and self._backup_details_differ()):
            return False
        return {id(s) for s in servers} == {id(s) for s in primaries}

    def _merge_remote_backups(self, remote: list[Server]) -> None:
        """Make the other-datacenter servers of a heartbeat the remote backups: new
        ones appended, known ones refreshed in place, those no longer listed gone;
        configured backups stay."""
        names = {s.name for s in remote}
        gone = self._remote_names - names
        by_name = {s.name: s for s in remote}
        kept = [by_name.get(s.name, s) for s in self._backups if s.name not in gone]
        known = {s.name for s in kept}
        added = [s for s in remote if s.name not in known]
        self._backups = kept + added
        for server in remote:
            self._health.setdefault(server.name, ServerHealth())
        if added:
            self._demoted_tiers.discard(_Tier.BACKUP)
        self._remote_names = names

    def _backup_details_differ(self) -> bool:
        """True if a backup has a primary's name but not its details, which a
        refresh would copy to it."""
        by_name = {s.name: s for s in self._primaries}
        return any(by_name.get(s.name, s) is not s for s in self._backups)

    def _replace_backup_details(self, server: Server) -> None:
        self._backups = [server if s.name == server.name else s for s in self._backups]

    def _forget_unknown_health(self) -> None:
        names = {s.name for s in self._primaries} | {s.name for s in self._backups}
        for name in list(self._health):
            if name not in names:
                del self._health[name]

    @staticmethod
    def _name_of(server: Server | str) -> str:
        if isinstance(server, Server):
            return server.name
        if isinstance(server, str) and server:
            return server
        raise InvalidServerError("server", f"must be a Server or a non-empty name, got {server!r}")


def _with_draining(server: Server, draining: bool, name: str) -> Server:
    if server.name != name or server.draining == draining:
        return server
    return dataclasses.replace(server, draining=draining)


def _reconcile(shuffled: Sequence[Server], current: Sequence[Server]) -> list[Server]:
    """`shuffled` restricted to the servers still in `current` (with their current
    records), followed by servers that joined `current` since."""
    by_name = {server.name: server for server in current}
    kept = [by_name[server.name] for server in shuffled if server.name in by_name]
    seen = {server.name for server in kept}
    return kept + [server for server in current if server.name not in seen]


def _commit_order(shuffled: list[Server], head_name: str, failed_names: list[str]) -> list[Server]:
    """The head first, then the untested in shuffled order, then the failed in
    ping order: the result of Consul cycling each failed server to the end."""
    failed_set = set(failed_names)
    by_name = {s.name: s for s in shuffled}
    head = [by_name[head_name]] if head_name in by_name else []
    untested = [s for s in shuffled if s.name != head_name and s.name not in failed_set]
    failed = [by_name[name] for name in failed_names if name in by_name]
    return head + untested + failed


def _addresses_of(seed: str, resolution: object) -> list[str]:
    """The addresses of one seed's resolution, refusing what cannot be addresses
    (checked before the pool changes)."""
    if isinstance(resolution, (str, bytes)):
        raise PoolInputError(
            f"resolutions[{seed!r}]",
            "must be a sequence of 'host:port' strings or an OSError/ValueError, got one string",
        )
    if not isinstance(resolution, Iterable):
        raise PoolInputError(
            f"resolutions[{seed!r}]",
            f"must be a sequence of 'host:port' strings or an OSError/ValueError, "
            f"got {resolution!r}",
        )
    return list(resolution)


def _ping_results(plan: RebalancePlan, results: PingResults) -> dict[str, bool]:
    """`apply_pings`'s results by server name, checked against the plan."""
    if isinstance(results, (str, bytes)):
        raise InvalidServerError("results", f"must be (server, answered) pairs, got {results!r}")
    pairs = results.items() if isinstance(results, Mapping) else results
    planned = {server.name for server in plan.ping_order}
    by_name: dict[str, bool] = {}
    for index, pair in enumerate(pairs):
        try:
            server, answered = pair
        except (TypeError, ValueError):
            raise InvalidServerError(
                f"results[{index}]", f"must be a (server, answered) pair, got {pair!r}"
            ) from None
        if isinstance(server, Server):
            name = server.name
        elif isinstance(server, str) and server:
            name = server
        else:
            raise InvalidServerError(
                f"results[{index}]", f"must name a Server or a server name, got {server!r}"
            )
        if name not in planned:
            raise InvalidServerError(f"results[{index}]", f"{name!r} is not in the plan")
        if name in by_name:
            raise InvalidServerError(f"results[{index}]", f"a second result for {name!r}")
        if not isinstance(answered, bool):
            raise InvalidServerError(
                f"results[{index}]", f"the answer must be True or False, got {answered!r}"
            )
        by_name[name] = answered
    return by_name
