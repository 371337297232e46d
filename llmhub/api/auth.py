"""Who is calling: API keys (``lhk_...``) and OIDC bearer tokens, mapped to one ``Principal``.

Permissions are a scope (what kind of endpoint) and a role (how much within the tenant):

- API keys carry scopes (``ingest``, ``read``, ``admin``; ``admin`` implies the other two) and a
  role (``viewer``, ``editor``, ``admin``).
- OIDC tokens carry a tenant claim and a role claim; a viewer may read, an editor may also
  ingest and write feedback, an admin may do everything.

Every endpoint declares ``require(scope, role)``; the tenant always comes from the credential,
never from the request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from llmhub.api.cache import CacheVersions
from llmhub.api.keys import secret_matches, split_token
from llmhub.api.problems import Problem
from llmhub.config import ApiSettings

ROLE_RANK = {"viewer": 0, "editor": 1, "admin": 2}
ROLE_SCOPES = {
    "viewer": frozenset({"read"}),
    "editor": frozenset({"read", "ingest"}),
    "admin": frozenset({"read", "ingest", "admin"}),
}
# Key lookups are cached this long at most. A revocation, rotation or new key bumps
# api.cache_versions (migration 0015, a trigger on api.api_keys): every process drops its cached
# lookups at its next poll (LLMHUB_API_CACHE_POLL_S, 1 s), and this process at once when the
# revocation came through it. While the versions cannot be polled, every request looks its key up.
KEY_CACHE_S = 60.0
KEY_CACHE_ENTRIES = 10_000
KEYS_VERSION = "api.api_keys"
_BEARER = {"WWW-Authenticate": 'Bearer realm="llmhub"'}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its tenant, role and scopes, and an id safe to log."""

    tenant_id: str
    role: str
    scopes: frozenset[str]
    subject: str

    def allows(self, scope: str, role: str) -> bool:
        scoped = scope in self.scopes or "admin" in self.scopes
        return scoped and ROLE_RANK[self.role] >= ROLE_RANK[role]


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", detail, dict(_BEARER))


class Authenticator:
    """Turns a request's credentials into a ``Principal`` (or a 401 problem)."""

    def __init__(
        self,
        settings: ApiSettings,
        pool: AsyncConnectionPool,
        versions: CacheVersions | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._versions = versions or CacheVersions()
        self._versions.listeners.append(self.forget_keys)
        self._keys: dict[str, tuple[float, tuple | None]] = {}
        self._jwks_client: jwt.PyJWKClient | None = None
        self._jwks: jwt.PyJWKSet | None = None
        if settings.jwks_url:
            if settings.jwks_url.startswith(("http://", "https://")):
                self._jwks_client = jwt.PyJWKClient(settings.jwks_url, lifespan=300)
            else:
                self._jwks = jwt.PyJWKSet.from_dict(
                    orjson.loads(Path(settings.jwks_url).read_bytes())
                )

    async def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            token = token.strip()
        else:
            token = request.headers.get("x-api-key", "").strip()
        if not token:
            raise _unauthorized("missing credentials (Authorization: Bearer <key or token>)")
        if split_token(token) is not None:
            return await self._from_key(token)
        return await self._from_jwt(token)

    async def _from_key(self, token: str) -> Principal:
        parsed = split_token(token)
        assert parsed is not None
        key_id, secret = parsed
        now = time.monotonic()
        cached = self._keys.get(key_id)
        if cached is None or now - cached[0] > KEY_CACHE_S or not self._versions.fresh:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "select tenant_id, secret_sha256, scopes, role, "
                    "extract(epoch from expires_at)::float8, revoked_at is not null "
                    "from api.api_keys where key_id = %s",
                    (key_id,),
                )
                row = await cur.fetchone()
            cached = (now, row)
            self._remember(key_id, cached)
        row = cached[1]
        if row is None or not secret_matches(secret, row[1]):
            raise _unauthorized("invalid API key")
        if row[5] or (row[4] is not None and row[4] <= time.time()):
            raise _unauthorized("API key expired or revoked")
        return Principal(row[0], row[3], frozenset(row[2]), f"key:{key_id}")

    def _remember(self, key_id: str, entry: tuple[float, tuple | None]) -> None:
        self._keys.pop(key_id, None)
        self._keys[key_id] = entry
        # Bounded: unknown key ids are cached too (a client retrying a wrong key costs no
        # lookup each time) and must not grow the process without limit.
        while len(self._keys) > KEY_CACHE_ENTRIES:
            self._keys.pop(next(iter(self._keys)))

    def forget_keys(self, changed: set[str] | None = None) -> None:
        """Drop every cached key lookup (``api.api_keys`` changed: a key revoked, rotated or
        issued somewhere); a listener of ``CacheVersions``."""
        if changed is None or KEYS_VERSION in changed:
            self._keys.clear()

    async def _from_jwt(self, token: str) -> Principal:
        if self._jwks is None and self._jwks_client is None:
            raise _unauthorized("not an API key, and no OIDC issuer is configured")
        try:
            if self._jwks_client is not None:
                key = await asyncio.to_thread(self._jwks_client.get_signing_key_from_jwt, token)
            else:
                assert self._jwks is not None
                kid = jwt.get_unverified_header(token).get("kid")
                key = self._jwks[kid] if kid else self._jwks.keys[0]
            options: dict[str, Any] = {"require": ["exp", "iat"]}
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"],
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                options=options,
            )
        except (jwt.PyJWTError, KeyError) as exc:
            raise _unauthorized(f"invalid bearer token: {type(exc).__name__}") from None
        tenant = claims.get(self._settings.jwt_tenant_claim)
        role = claims.get(self._settings.jwt_role_claim)
        if isinstance(role, list):
            ranked = [r for r in role if r in ROLE_RANK]
            role = max(ranked, key=ROLE_RANK.__getitem__) if ranked else None
        if not isinstance(tenant, str) or not tenant:
            raise Problem(403, "forbidden", f"token has no {self._settings.jwt_tenant_claim!r}")
        if role not in ROLE_RANK:
            raise Problem(403, "forbidden", "token has no known role (viewer, editor, admin)")
        return Principal(tenant, role, ROLE_SCOPES[role], f"sub:{claims.get('sub', '?')}")


def check(principal: Principal, scope: str, role: str) -> None:
    if not principal.allows(scope, role):
        raise Problem(
            403,
            "forbidden",
            f"this endpoint needs scope {scope!r} and role {role!r} or above; the credential "
            f"has role {principal.role!r} and scopes {sorted(principal.scopes)}",
        )
