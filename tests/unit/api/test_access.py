"""The access rule of the public API: scope table, tokens file, key material."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from controlplane.api.auth import (
    METHOD_SCOPES,
    AccessPolicy,
    ApiToken,
    Scope,
    configured_tokens,
    load_tokens_file,
    parse_tokens,
)
from controlplane.api.services import PUBLIC_SERVICES
from controlplane.config import AgentConfig
from controlplane.configerror import ConfigError
from controlplane.errors import PermissionDenied, Unauthenticated


class _Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...] = (), cert: bool = False) -> None:
        self._metadata = metadata
        self._cert = cert

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [b"-----BEGIN CERTIFICATE-----"]} if self._cert else {}


def ctx(secret: str = "", cert: bool = False) -> Any:
    metadata = (("authorization", f"Bearer {secret}"),) if secret else ()
    return _Context(metadata, cert)


READ = ApiToken("dash", Scope.READ, b"r" * 16)
WRITE = ApiToken("deploy", Scope.WRITE, b"w" * 16)
OPS = ApiToken("ops", Scope.OPERATOR, b"o" * 16)


def test_every_public_method_has_a_scope_and_nothing_else_does() -> None:
    methods = {f"{s.name}/{m}" for s in PUBLIC_SERVICES for m in s.method_names}
    assert set(METHOD_SCOPES) == methods


def test_key_material_and_leaving_need_the_operator_scope() -> None:
    operator = {method for method, scope in METHOD_SCOPES.items() if scope is Scope.OPERATOR}
    assert operator == {
        "Keyring/ListKeys",
        "Keyring/InstallKey",
        "Keyring/UseKey",
        "Keyring/RemoveKey",
        "Membership/Leave",
        "Membership/ForceLeave",
    }


@pytest.mark.parametrize(
    ("token", "method", "allowed"),
    [
        (READ, "Membership/ListMembers", True),
        (READ, "ServerPool/Heartbeat", True),
        (READ, "Ring/AddNode", False),
        (WRITE, "Ring/AddNode", True),
        (WRITE, "Membership/ForceLeave", False),
        (WRITE, "Membership/ListMembers", True),
        (OPS, "Keyring/ListKeys", True),
        (OPS, "Ring/RemoveNode", True),
    ],
)
def test_scopes_are_ordered(token: ApiToken, method: str, allowed: bool) -> None:
    policy = AccessPolicy((READ, WRITE, OPS))
    context = ctx(token.secret.decode())
    if allowed:
        policy.check(method, context)
    else:
        with pytest.raises(PermissionDenied, match=f"needs the {METHOD_SCOPES[method].label}"):
            policy.check(method, context)


def test_missing_and_unknown_tokens() -> None:
    policy = AccessPolicy((READ,))
    with pytest.raises(Unauthenticated, match="requires an API token"):
        policy.check("Membership/ListMembers", ctx())
    with pytest.raises(PermissionDenied, match="not valid"):
        policy.check("Membership/ListMembers", ctx("x" * 16))
    basic: Any = _Context((("authorization", "Basic rrrr"),))
    with pytest.raises(PermissionDenied, match="not valid"):
        policy.check("Membership/ListMembers", basic)


def test_without_tokens_keys_need_loopback_or_a_client_certificate() -> None:
    exposed = AccessPolicy((), loopback_only=False)
    with pytest.raises(PermissionDenied, match="verify_incoming"):
        exposed.check("Keyring/ListKeys", ctx())
    # A certificate counts only when the server verified it (verify_incoming).
    with pytest.raises(PermissionDenied, match="verify_incoming"):
        exposed.check("Keyring/ListKeys", ctx(cert=True))
    AccessPolicy((), verify_incoming=True).check("Keyring/ListKeys", ctx(cert=True))
    exposed.check("Membership/ListMembers", ctx())
    AccessPolicy((), loopback_only=True).check("Keyring/UseKey", ctx())


def test_identify_compares_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: the time taken does not say which secret matched."""
    import hmac

    calls: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    # auth.py calls hmac.compare_digest through the module, so patching it there counts.
    monkeypatch.setattr(hmac, "compare_digest", counting)
    policy = AccessPolicy((READ, WRITE, OPS))
    assert policy.identify(b"r" * 16) is READ
    assert len(calls) == 3
    assert policy.identify(b"nope") is None
    assert len(calls) == 6


def test_the_tokens_file() -> None:
    text = """
[[token]]
name = "deploy"
secret = "0123456789abcdef"
scopes = ["read", "write"]
"""
    (token,) = parse_tokens(text, "'t.toml'")
    assert (token.name, token.scope) == ("deploy", Scope.WRITE)
    assert "0123456789abcdef" not in repr(token)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope = 1", "unknown key 'nope'"),
        ("[[token]]\nname='a'\nsecret='0123456789abcdef'\nscopes=[]", "scopes must be"),
        ("[[token]]\nname='a'\nsecret='0123456789 abcdef'\nscopes=['read']", "without spaces"),
        ("[[token]]\nsecret='0123456789abcdef'\nscopes=['read']", "name must be"),
        (
            (
                "[[token]]\nname='a'\nsecret='0123456789abcdef'\nscopes=['read']\n"
                "[[token]]\nname='b'\nsecret='0123456789abcdef'\nscopes=['read']"
            ),
            "also another token's",
        ),
        (
            "[[token]]\nname='a'\nsecret='0123456789abcdef'\nscopes=['read']\nextra=1",
            "unknown key 'extra'",
        ),
    ],
)
def test_a_bad_tokens_file_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_tokens(text, "'t.toml'")


def test_api_token_is_an_operator_token() -> None:
    (token,) = configured_tokens("s3cret-token-42", ())
    assert (token.name, token.scope) == ("api_token", Scope.OPERATOR)
    with pytest.raises(ConfigError, match="also a token"):
        configured_tokens("0123456789abcdef", [ApiToken("a", Scope.READ, b"0123456789abcdef")])


def test_a_tokens_file_others_may_read_is_used_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text("[[token]]\nname='a'\nsecret='0123456789abcdef'\nscopes=['read']\n")
    path.chmod(0o600)
    tokens, warning = load_tokens_file(str(path))
    assert [t.name for t in tokens] == ["a"]
    assert warning is None
    path.chmod(0o644)
    _, warning = load_tokens_file(str(path))
    assert warning is not None
    assert "mode 644" in warning
    assert "0123456789abcdef" not in warning


def test_a_missing_tokens_file_names_itself(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tokens file .*nowhere\.toml.* cannot be read"):
        load_tokens_file(str(tmp_path / "nowhere.toml"))


def test_secrets_are_not_in_the_config_repr() -> None:
    config = AgentConfig(api_token="s3cret-token-42", encrypt=base64.b64encode(b"k" * 32).decode())
    assert "s3cret-token-42" not in repr(config)
    assert config.encrypt not in repr(config)
