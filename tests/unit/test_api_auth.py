"""Roles and scopes of the HTTP API, API key tokens, problem bodies, cursors."""

from __future__ import annotations

import pytest

from llmhub.api.auth import ROLE_SCOPES, Principal
from llmhub.api.keys import hash_secret, secret_matches, split_token
from llmhub.api.routes_query import decode_cursor, encode_cursor


@pytest.mark.parametrize(
    ("role", "scopes", "scope", "needed", "allowed"),
    [
        ("viewer", {"read"}, "read", "viewer", True),
        ("viewer", {"read"}, "read", "editor", False),
        ("viewer", {"read", "ingest"}, "ingest", "editor", False),
        ("editor", {"read"}, "ingest", "editor", False),
        ("editor", {"ingest"}, "ingest", "editor", True),
        ("editor", {"read", "ingest"}, "admin", "admin", False),
        ("admin", {"admin"}, "ingest", "editor", True),
        ("admin", {"read"}, "admin", "admin", False),
    ],
)
def test_scope_and_role_both_needed(
    role: str, scopes: set[str], scope: str, needed: str, allowed: bool
) -> None:
    principal = Principal("t", role, frozenset(scopes), "key:x")
    assert principal.allows(scope, needed) is allowed


def test_oidc_roles_map_to_scopes() -> None:
    viewer = Principal("t", "viewer", ROLE_SCOPES["viewer"], "sub:a")
    editor = Principal("t", "editor", ROLE_SCOPES["editor"], "sub:b")
    assert not viewer.allows("ingest", "editor")
    assert editor.allows("ingest", "editor") and not editor.allows("admin", "admin")


def test_key_tokens() -> None:
    # Secrets from token_urlsafe may contain "_": only the first one separates the id.
    assert split_token("lhk_abc123_se_cr_et") == ("abc123", "se_cr_et")
    assert split_token("lhk_abc") is None
    assert split_token("eyJhbGciOi.x.y") is None
    assert secret_matches("s3cret", hash_secret("s3cret"))
    assert not secret_matches("s3cret!", hash_secret("s3cret"))


def test_cursor_round_trip_and_tampering() -> None:
    from llmhub.api.problems import Problem

    cursor = encode_cursor(["2026-11-29T10:00:00+00:00", "app", "gpt-4o"])
    assert decode_cursor(cursor, 3) == ["2026-11-29T10:00:00+00:00", "app", "gpt-4o"]
    with pytest.raises(Problem):
        decode_cursor(cursor, 2)
    with pytest.raises(Problem):
        decode_cursor("!!!not-base64", 3)
