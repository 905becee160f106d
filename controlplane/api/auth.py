"""Who may call what on the public API: API tokens, their scopes, and key material.

Consul's ACL idea, kept small. A token has a name (shown in logs and errors; the
secret never is) and one scope; scopes are ordered, each including the ones below:

- `read`: look (lists, gets, watches, heartbeats, FindServer);
- `write`: change the cluster's shared state (join, tags, events, pools, ring nodes);
- `operator`: what can take the cluster apart or read its secrets: the Keyring
  service, Leave and ForceLeave.

Tokens come from `api_tokens_file` (TOML, see `parse_tokens`) and from `api_token`,
which is an operator token named "api_token". With any token configured, every RPC
of the public services needs `authorization: Bearer <secret>`: none is
UNAUTHENTICATED, an unknown secret PERMISSION_DENIED (Consul's "ACL not found"), a
known one without the method's scope PERMISSION_DENIED naming both. Health,
reflection and the agents' internal Gossip service stay open; the agent refuses to
start with tokens unless gossip encryption or mTLS guards that service.

**Key material is never served anonymously.** Keyring RPCs need the operator scope;
without tokens they need a verified client certificate (mTLS), or an agent whose API
listens on a loopback address only (Serf's RPC listens on loopback by default for the
same reason). Elsewhere, `0.0.0.0` included, they answer PERMISSION_DENIED and say
how to enable them.

Secrets are compared in constant time: every configured secret is compared with
`hmac.compare_digest`, without stopping at the first match, so the time taken says
nothing about which secret (or how much of one) matched.
"""

from __future__ import annotations

import enum
import hmac
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc.aio

from controlplane.configerror import ConfigError
from controlplane.errors import PermissionDenied, Unauthenticated

# A tokens file is a handful of lines; anything larger is not one.
MAX_TOKENS_FILE_BYTES = 1 << 20
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 512
NAME_MAX = 64


class Scope(enum.IntEnum):
    """What a token may do; a higher scope includes every lower one."""

    READ = 1
    WRITE = 2
    OPERATOR = 3

    @property
    def label(self) -> str:
        return self.name.lower()


SCOPES_BY_LABEL = {scope.label: scope for scope in Scope}

# Every RPC of every public service, "Service/Method" -> the scope it needs. A unit
# test checks that the table covers every method of the protos, so a new RPC cannot
# be served unscoped.
METHOD_SCOPES: Mapping[str, Scope] = {
    "Membership/Join": Scope.WRITE,
    "Membership/Leave": Scope.OPERATOR,
    "Membership/ListMembers": Scope.READ,
    "Membership/GetLocalMember": Scope.READ,
    "Membership/GetCoordinate": Scope.READ,
    "Membership/UpdateTags": Scope.WRITE,
    "Membership/ForceLeave": Scope.OPERATOR,
    "Membership/FireUserEvent": Scope.WRITE,
    "Membership/WatchMembers": Scope.READ,
    "Membership/WatchEvents": Scope.READ,
    "Membership/GetLeader": Scope.READ,
    "Membership/WatchLeader": Scope.READ,
    "Membership/GetInfo": Scope.READ,
    "Membership/Monitor": Scope.READ,
    # A query makes every matching member run its handlers (commands); a watcher of
    # queries answers in the agent's name: all three change what others are told.
    "Membership/Query": Scope.WRITE,
    "Membership/WatchQueries": Scope.WRITE,
    "Membership/RespondQuery": Scope.WRITE,
    # Heartbeat records the caller in ListClients, but that is the caller's own entry,
    # bounded and expiring; every client sends it, so it needs no more than read.
    "ServerPool/Heartbeat": Scope.READ,
    "ServerPool/RefreshServerLists": Scope.WRITE,
    "Membership/GetLeaderHistory": Scope.READ,
    "ServerPool/SetBackupServers": Scope.WRITE,
    "ServerPool/AddServer": Scope.WRITE,
    "ServerPool/RemoveServer": Scope.WRITE,
    "ServerPool/FindServer": Scope.READ,
    # Reordering a pool changes what every other caller of FindServer is handed.
    "ServerPool/NotifyFailedServer": Scope.WRITE,
    "ServerPool/RebalanceServers": Scope.WRITE,
    "ServerPool/ListServers": Scope.READ,
    "ServerPool/ListClients": Scope.READ,
    "Ring/GetNode": Scope.READ,
    "Ring/GetNodes": Scope.READ,
    "Ring/ListNodes": Scope.READ,
    "Ring/GetRing": Scope.READ,
    "Ring/AddNode": Scope.WRITE,
    "Ring/RemoveNode": Scope.WRITE,
    "Ring/WatchRing": Scope.READ,
    "Keyring/ListKeys": Scope.OPERATOR,
    "Keyring/InstallKey": Scope.OPERATOR,
    "Keyring/UseKey": Scope.OPERATOR,
    "Keyring/RemoveKey": Scope.OPERATOR,
}
KEY_MATERIAL_SERVICE = "Keyring"


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    scope: Scope
    # Never shown: not in repr, logs or errors.
    secret: bytes = field(repr=False)


def check_secret(secret: str) -> None:
    """The rule for a secret from the tokens file; ValueError says which part fails."""
    if not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH:
        raise ValueError(
            f"must be {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} characters, got {len(secret)}"
        )
    if any(c.isspace() or not c.isprintable() or not c.isascii() for c in secret):
        raise ValueError("must be printable ASCII without spaces")


def parse_tokens(text: str, source: str) -> list[ApiToken]:
    """The `[[token]]` tables of a tokens file:

    ```toml
    [[token]]
    name = "deploy"              # shown in logs and errors
    secret = "…"                 # 16 to 512 printable ASCII characters, unique
    scopes = ["write"]           # read | write | operator; the highest one counts
    ```
    """
    import tomllib  # only an agent with a tokens file needs the parser

    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"tokens file {source}: not valid TOML: {error}") from None
    unknown = sorted(set(document) - {"token"})
    if unknown:
        raise ConfigError(
            f"tokens file {source}: unknown key {unknown[0]!r} (expected [[token]] tables)"
        )
    entries = document.get("token", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"tokens file {source}: holds no [[token]] tables")
    tokens: list[ApiToken] = []
    names: set[str] = set()
    secrets: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        where = f"tokens file {source}: token {index}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a [[token]] table")
        extra = sorted(set(entry) - {"name", "secret", "scopes"})
        if extra:
            raise ConfigError(f"{where}: unknown key {extra[0]!r} (name, secret, scopes)")
        name, secret, scopes = entry.get("name"), entry.get("secret"), entry.get("scopes")
        if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX or not name.isprintable():
            raise ConfigError(f"{where}: name must be 1 to {NAME_MAX} printable characters")
        where = f"tokens file {source}: token {name!r}"
        if name in names:
            raise ConfigError(f"{where}: the name is used twice")
        if not isinstance(secret, str):
            raise ConfigError(f"{where}: secret must be a string")
        try:
            check_secret(secret)
        except ValueError as error:
            raise ConfigError(f"{where}: secret {error}") from None
        if secret in secrets:
            raise ConfigError(f"{where}: its secret is also another token's")
        if (
            not isinstance(scopes, list)
            or not scopes
            or not all(isinstance(s, str) and s in SCOPES_BY_LABEL for s in scopes)
        ):
            raise ConfigError(f"{where}: scopes must be a non-empty list of read, write, operator")
        names.add(name)
        secrets.add(secret)
        scope = max(SCOPES_BY_LABEL[s] for s in scopes)
        tokens.append(ApiToken(name, scope, secret.encode()))
    return tokens


def load_tokens_file(path: str) -> tuple[list[ApiToken], str | None]:
    """The tokens of `path`, checked, and a warning to log when others may read it."""
    source = repr(path)
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read(MAX_TOKENS_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError(
            f"tokens file {source} cannot be read: {error.strerror or error}"
        ) from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"tokens file {source} is not a regular file")
    if len(data) > MAX_TOKENS_FILE_BYTES:
        raise ConfigError(f"tokens file {source} is larger than 1 MiB")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ConfigError(f"tokens file {source} is not UTF-8 text") from None
    warning = None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warning = (
            f"tokens file {source} can be read by other users (mode {stat.S_IMODE(mode):o});"
            " chmod 600 it"
        )
    return parse_tokens(text, source), warning


def configured_tokens(api_token: str, tokens_file: Sequence[ApiToken]) -> list[ApiToken]:
    """The file's tokens plus `api_token`, an operator token named "api_token"."""
    tokens = list(tokens_file)
    if api_token:
        secret = api_token.encode()
        if any(hmac.compare_digest(secret, token.secret) for token in tokens):
            raise ConfigError("api_token is also a token of api_tokens_file; use one")
        tokens.append(ApiToken("api_token", Scope.OPERATOR, secret))
    return tokens


def _bearer(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode(errors="replace")
    return ""


def _has_verified_client_certificate(context: grpc.aio.ServicerContext[Any, Any]) -> bool:
    # gRPC lists the peer's certificate only when it verified it against the CA
    # (the server requires and checks client certificates with verify_incoming).
    return bool(context.auth_context().get("x509_pem_cert"))


@dataclass(frozen=True)
class AccessPolicy:
    """The access rule of one agent, applied to each call before its handler runs.

    `loopback_only`: the API listens on a loopback address only, so anonymous callers
    are local users (the rule for key material without tokens or mTLS).
    `verify_incoming`: the server requires and verifies client certificates; only then
    does a certificate in the auth context count (defence in depth should gRPC ever
    pass on an unverified one)."""

    tokens: Sequence[ApiToken] = ()
    loopback_only: bool = False
    verify_incoming: bool = False

    def identify(self, presented: bytes) -> ApiToken | None:
        """The token whose secret is `presented`, comparing against every secret."""
        found = None
        for token in self.tokens:
            if hmac.compare_digest(presented, token.secret):
                found = token
        return found

    def check(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Raises Unauthenticated or PermissionDenied unless the caller may call `method`
        ("Service/Method")."""
        needed = METHOD_SCOPES[method]
        if self.tokens:
            self._check_token(method, needed, _bearer(context))
            return
        if method.partition("/")[0] == KEY_MATERIAL_SERVICE and not self.loopback_only:
            if self.verify_incoming and _has_verified_client_certificate(context):
                return
            raise PermissionDenied(
                f"{method} serves the cluster's gossip keys and this agent's API is reachable"
                " from the network without tokens or mTLS: configure an operator token"
                " (api_tokens_file or api_token) or client certificates (verify_incoming),"
                " or bind the agent to a loopback address"
            )

    def _check_token(self, method: str, needed: Scope, presented: str) -> None:
        if not presented:
            raise Unauthenticated(
                "this agent requires an API token: send 'authorization: Bearer <token>' "
                "(controlplane --token, --token-file or CONTROLPLANE_TOKEN;"
                " ClientOptions(token=...))"
            )
        scheme, _, secret = presented.partition(" ")
        token = self.identify(secret.encode()) if scheme.lower() == "bearer" else None
        if token is None:
            raise PermissionDenied("the API token is not valid for this agent")
        if token.scope < needed:
            raise PermissionDenied(
                f"{method} needs the {needed.label} scope; token {token.name!r} has"
                f" {token.scope.label}"
            )


def access_check(policy: AccessPolicy | None, method: str) -> Callable[[Any, Any], None] | None:
    """`policy` for `method` as a guard's check of (request, context) (api/errors.py)."""
    if policy is None:
        return None

    def checked(request: Any, context: Any) -> None:
        policy.check(method, context)

    return checked
