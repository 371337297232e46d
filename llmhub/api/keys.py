"""Per-tenant API keys: issue, list, revoke, rotate (``llmhub keys``) and look up (the API).

A key is ``lhk_<key id>_<secret>``: the id finds the row, the secret (256 random bits) is
stored only as its SHA-256. A slow password hash would protect guessable secrets; these are not
guessable, and a fast hash keeps authentication off the request's critical path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

PREFIX = "lhk_"
SCOPES = ("ingest", "read", "admin")
ROLES = ("viewer", "editor", "admin")


@dataclass(frozen=True)
class KeyRecord:
    """One stored key (never its secret)."""

    key_id: str
    tenant_id: str
    name: str
    scopes: tuple[str, ...]
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed key, else None."""
    if not token.startswith(PREFIX):
        return None
    key_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret


def secret_matches(secret: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_sha256)


_COLUMNS = "key_id, tenant_id, name, scopes, role, created_at, expires_at, revoked_at, replaced_by"


def _validate(scopes: tuple[str, ...], role: str) -> None:
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {SCOPES}, got {scopes}")
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")


def create_key(
    conn: psycopg.Connection,
    tenant_id: str,
    name: str,
    scopes: tuple[str, ...],
    role: str,
    expires_in: timedelta | None = None,
) -> tuple[str, KeyRecord]:
    """Issue a key; returns the token (shown once, never stored) and its record."""
    _validate(scopes, role)
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = conn.execute(
        "insert into api.api_keys (key_id, tenant_id, name, secret_sha256, scopes, role, "
        "expires_at) values (%s, %s, %s, %s, %s, %s, now() + %s) returning "
        "key_id, tenant_id, name, scopes, role, created_at, expires_at, revoked_at, "
        "replaced_by",
        (key_id, tenant_id, name, hash_secret(secret), list(scopes), role, expires_in),
    ).fetchone()
    assert row is not None
    return f"{PREFIX}{key_id}_{secret}", _record(row)


def list_keys(conn: psycopg.Connection, tenant_id: str | None = None) -> list[KeyRecord]:
    rows = conn.execute(
        "select key_id, tenant_id, name, scopes, role, created_at, expires_at, revoked_at, "
        "replaced_by "
        "from api.api_keys where %(t)s::text is null or tenant_id = %(t)s "
        "order by tenant_id, created_at",
        {"t": tenant_id},
    ).fetchall()
    return [_record(row) for row in rows]


def revoke_key(conn: psycopg.Connection, key_id: str) -> bool:
    return (
        conn.execute(
            "update api.api_keys set revoked_at = now() where key_id = %s and revoked_at is null",
            (key_id,),
        ).rowcount
        == 1
    )


def rotate_key(
    conn: psycopg.Connection, key_id: str, grace: timedelta = timedelta(hours=24)
) -> tuple[str, KeyRecord]:
    """Issue a replacement with the same tenant, scopes and role; the old key stays valid for
    ``grace`` (so deployments can roll) and then expires."""
    old = conn.execute(
        "select key_id, tenant_id, name, scopes, role, created_at, expires_at, revoked_at, "
        "replaced_by "
        "from api.api_keys where key_id = %s and revoked_at is null for update",
        (key_id,),
    ).fetchone()
    if old is None:
        raise KeyError(f"no active key {key_id}")
    record = _record(old)
    remaining = (
        record.expires_at - datetime.now(record.expires_at.tzinfo) if record.expires_at else None
    )
    token, new = create_key(
        conn, record.tenant_id, record.name, record.scopes, record.role, remaining
    )
    conn.execute(
        "update api.api_keys set replaced_by = %s, "
        "expires_at = least(coalesce(expires_at, 'infinity'), now() + %s) where key_id = %s",
        (new.key_id, grace, key_id),
    )
    return token, new


def _record(row: tuple) -> KeyRecord:
    return KeyRecord(
        key_id=row[0],
        tenant_id=row[1],
        name=row[2],
        scopes=tuple(row[3]),
        role=row[4],
        created_at=row[5],
        expires_at=row[6],
        revoked_at=row[7],
        replaced_by=row[8],
    )
