"""Tenant administration: a tenant admin lists, issues and revokes its own tenant's API keys."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from llmhub.api.auth import ROLE_RANK, Principal
from llmhub.api.deps import require, services, tenant_transaction
from llmhub.api.keys import PREFIX, hash_secret
from llmhub.api.problems import Problem

router = APIRouter(prefix="/api/v1/keys", tags=["admin"])
Admin = Annotated[Principal, Depends(require("admin", "admin"))]


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Literal["ingest", "read", "admin"]] = Field(min_length=1)
    role: Literal["viewer", "editor", "admin"] = "viewer"
    expires_days: int | None = Field(None, ge=1, le=3650)


def _key_json(row: tuple) -> dict[str, Any]:
    return {
        "key_id": row[0],
        "name": row[1],
        "scopes": list(row[2]),
        "role": row[3],
        "created_at": row[4].isoformat(),
        "expires_at": row[5].isoformat() if row[5] else None,
        "revoked_at": row[6].isoformat() if row[6] else None,
    }


@router.get("", summary="The tenant's API keys (never their secrets)")
async def list_keys(request: Request, principal: Admin) -> dict[str, Any]:
    svc = services(request)
    async with tenant_transaction(svc, principal) as conn:
        cur = await conn.execute(
            "select key_id, name, scopes, role, created_at, expires_at, revoked_at "
            "from api.api_keys where tenant_id = %s order by created_at",
            (principal.tenant_id,),
        )
        rows = await cur.fetchall()
    return {"data": [_key_json(row) for row in rows]}


@router.post("", status_code=201, summary="Issue a key of the caller's tenant (shown once)")
async def create_key(request: Request, principal: Admin, body: NewKey) -> dict[str, Any]:
    if ROLE_RANK[body.role] > ROLE_RANK[principal.role]:
        raise Problem(403, "forbidden", "cannot issue a key with a higher role than your own")
    svc = services(request)
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    expires = timedelta(days=body.expires_days) if body.expires_days else None
    async with tenant_transaction(svc, principal) as conn:
        cur = await conn.execute(
            "insert into api.api_keys (key_id, tenant_id, name, secret_sha256, scopes, role, "
            "expires_at) values (%s, %s, %s, %s, %s, %s, now() + %s) returning key_id, name, "
            "scopes, role, created_at, expires_at, revoked_at",
            (
                key_id,
                principal.tenant_id,
                body.name,
                hash_secret(secret),
                sorted(set(body.scopes)),
                body.role,
                expires,
            ),
        )
        row = await cur.fetchone()
    assert row is not None
    return {**_key_json(row), "token": f"{PREFIX}{key_id}_{secret}"}


@router.delete("/{key_id}", summary="Revoke a key of the caller's tenant")
async def revoke_key(request: Request, principal: Admin, key_id: str) -> dict[str, Any]:
    svc = services(request)
    async with tenant_transaction(svc, principal) as conn:
        cur = await conn.execute(
            "update api.api_keys set revoked_at = now() "
            "where key_id = %s and tenant_id = %s and revoked_at is null returning key_id",
            (key_id, principal.tenant_id),
        )
        row = await cur.fetchone()
    if row is None:
        raise Problem(404, "not-found", "no active key with that id in your tenant")
    # At once in this process; the others at their next poll of api.cache_versions (the
    # api_keys trigger bumped it in the same transaction).
    svc.auth.forget_keys()
    return {"key_id": key_id, "revoked": True}
