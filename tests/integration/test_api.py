"""The HTTP API against the real stack: a running ``llmhub serve``, real clients.

The module builds database ``<test db>_api`` (migrated; raw rows of tenants A and B; the request
marts built by dbt; analytics rows of both tenants), issues keys, starts ``llmhub serve`` on a
free port as role ``llmhub_api`` and drives it with the OpenTelemetry SDK's OTLP/HTTP exporters
(protobuf and JSON), the ``openai`` client under ``opentelemetry-instrumentation-openai-v2``
calling a local OpenAI-compatible server, and plain HTTP for the query endpoints.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import psycopg
import pytest
from conftest import make_event
from cryptography.hazmat.primitives.asymmetric import rsa
from kafka import KafkaConsumer, TopicPartition
from psycopg import sql

from integration.conftest import TEST_DATABASE
from integration.test_access import _insert_raw, _tenant_events
from llmhub.api.keys import create_key, revoke_key, split_token
from llmhub.config import Settings, load_settings, redact, with_database
from llmhub.contract.topics import BY_FAMILY
from llmhub.db import migrate
from llmhub.ingest.engine import Ingestor
from llmhub.stack.broker import ensure_topics

pytestmark = pytest.mark.integration

DATABASE = f"{TEST_DATABASE}_api"
DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")
LLMHUB_CLI = Path(sys.executable).with_name("llmhub")
A, B = "tenant-a", "tenant-b"
ISSUER, AUDIENCE = "https://idp.test", "llmhub-api"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Api:
    settings: Settings
    url: str
    keys: dict[str, str]
    private_key: Any
    workdir: Path
    env: dict[str, str]

    def client(self, key: str | None = None, token: str | None = None) -> httpx.Client:
        credential = token or (self.keys[key] if key else None)
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def jwt(self, tenant: str, role: str, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"user-{role}",
            "iat": now,
            "exp": now + 300,
            "tenant_id": tenant,
            "role": role,
            **claims,
        }
        return jwt.encode(payload, key or self.private_key, "RS256", headers={"kid": "k1"})

    def owner(self) -> psycopg.Connection:
        return psycopg.connect(self.settings.database_url, autocommit=True)

    def ingest(self) -> None:
        Ingestor(self.settings).run()


def run_dbt(workdir: Path, *args: str) -> None:
    env = {**os.environ, "LLMHUB_DB_NAME": DATABASE}
    paths = ["--target-path", str(workdir / "target"), "--log-path", str(workdir / "logs")]
    result = subprocess.run(
        [str(DBT), *args, "--profiles-dir", ".", *paths],
        cwd=DBT_PROJECT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"dbt {' '.join(args)} failed:\n{result.stdout[-5000:]}"


BUILD_MARTS = (
    "build",
    "--select",
    "+fct_llm_requests_hourly",
    "+fct_llm_requests_daily",
    "--exclude-resource-type",
    "test",
)


def _analytics_rows(conn: psycopg.Connection, tenant: str, now: datetime) -> None:
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    for i, flagged in enumerate((True, False)):
        conn.execute(
            "insert into analytics.anomalies (bucket_at, tenant_id, asset_id, request_model, "
            "metric, observed, expected, deviation, score, is_anomaly, detector, model_name, "
            "model_version) values (%s, %s, %s, 'gpt-4o', 'latency_p95_ms', 900, 300, "
            "600, 0.97, %s, 'fleet', 'anomaly-detector', '3')",
            # An application of each tenant's own: an id of A's anomaly names no row of B's.
            (hour - timedelta(hours=i), tenant, f"bot-{tenant}", flagged),
        )
    conn.execute(
        "insert into analytics.forecasts (series_key, tenant_id, asset_id, metric, grain, "
        "target_at, forecast_made_at, yhat, yhat_lower, yhat_upper, model_name, model_version) "
        "select %s, %s, 'app-chat', 'cost_usd', 'day', %s + d * interval '1 day', %s, 10, 8, 12, "
        "'forecaster', '2' from generate_series(1, 3) as d",
        (f"{tenant}/app-chat", tenant, now, now),
    )
    conn.execute(
        "insert into analytics.incidents (incident_id, tenant_id, tenant_ids, asset_ids, "
        "opened_at, last_seen_at, status, severity, root_cause_type, root_cause_entity, "
        "confidence, candidates, impact_score, affected_requests, excess_cost_usd, "
        "excess_volume_usd, excess_tokens_per_request_usd, excess_price_mix_usd, "
        "cost_baseline, explanation, rules, signature, member_count) values "
        "(%s, %s, array[%s], array['app-chat'], %s, %s, 'open', 'high', 'model', 'gpt-4o', "
        "0.9, '[]', 70, 1200, 12.5, 10, 2, 0.5, 'forecast', 'latency regression of gpt-4o', "
        "array['latency'], 'sig', 3)",
        (f"inc-{tenant}", tenant, tenant, hour - timedelta(hours=2), hour),
    )
    if tenant == A:
        # A provider incident touching A and a third tenant: A sees it, B does not, and A is
        # not told which applications it spans.
        conn.execute(
            "insert into analytics.incidents select 'inc-provider', '*', "
            "array[%s, 'tenant-z'], array['z-app'], opened_at - interval '1 hour', "
            "last_seen_at, resolved_at, status, severity, 'provider', 'openai', confidence, "
            "candidates, impact_score, affected_requests, excess_cost_usd, excess_volume_usd, "
            "excess_tokens_per_request_usd, excess_price_mix_usd, cost_baseline, explanation, "
            "rules, 'sig2', seen_before, member_count from analytics.incidents "
            "where incident_id = %s",
            (A, f"inc-{tenant}"),
        )
    conn.execute(
        "insert into analytics.budgets (tenant_id, asset_id, monthly_budget_usd) "
        "values (%s, '*', 1000)",
        (tenant,),
    )
    conn.execute(
        "insert into analytics.budget_projections (tenant_id, asset_id, month, projected_on, "
        "budget_usd, month_to_date_usd, projected_month_end_usd, projected_lower_usd, "
        "projected_upper_usd, model_name, model_version) values "
        "(%s, '*', date_trunc('month', now())::date, now()::date, 1000, 400, 900, 800, 1000, "
        "'budget', '1')",
        (tenant,),
    )


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    base = load_settings()
    admin_url = with_database(base.database_url, "postgres")
    drop = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE))
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(drop)
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
    except psycopg.OperationalError as exc:
        message = f"TimescaleDB at {redact(base.database_url)} unreachable: {exc}"
        if os.environ.get("LLMHUB_REQUIRE_STACK") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    workdir = tmp_path_factory.mktemp("api")
    run = uuid.uuid4().hex[:8]
    settings = replace(
        base,
        database_url=with_database(base.database_url, DATABASE),
        topic_prefix=f"t{run}.",
        consumer_group=f"llmhub-test-{run}",
    )
    proc: subprocess.Popen[bytes] | None = None
    try:
        migrate(settings)
        ensure_topics(settings.kafka_bootstrap, settings.topic_prefix)
        now = datetime.now(UTC)
        events = _tenant_events(A, now) + _tenant_events(B, now)
        # A second model for tenant A in the same hours: a coarser grouping spans two mart rows.
        day = (now - timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
        events += [
            (
                "telemetry",
                make_event(
                    "telemetry",
                    tenant_id=A,
                    occurred_at=(day + timedelta(minutes=m)).isoformat(),
                    body={"gen_ai.request.model": "gpt-4o-mini", "latency_ms": 100.0 + m},
                ),
            )
            for m in (5, 25)
        ]
        _insert_raw(settings, events)
        run_dbt(workdir, *BUILD_MARTS)
        keys: dict[str, str] = {}
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            for tenant in (A, B):
                _analytics_rows(conn, tenant, now)
            for name, tenant, scopes, role, expires in (
                ("a_editor", A, ("ingest", "read"), "editor", None),
                ("a_viewer", A, ("read",), "viewer", None),
                ("a_read_editor", A, ("read",), "editor", None),
                ("a_expired", A, ("read",), "viewer", timedelta(seconds=-1)),
                ("b_editor", B, ("ingest", "read"), "editor", None),
                ("c_editor", "tenant-c", ("ingest", "read"), "editor", None),
                ("a_admin", A, ("admin",), "admin", None),
            ):
                keys[name], _ = create_key(conn, tenant, name, scopes, role, expires)
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = orjson.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
        jwks_path = workdir / "jwks.json"
        jwks_path.write_bytes(orjson.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}))
        port = free_port()
        api_url = settings.database_url.replace("postgres@", "llmhub_api@", 1)
        env = {
            **os.environ,
            "LLMHUB_DATABASE_URL": settings.database_url,
            "LLMHUB_API_DATABASE_URL": api_url,
            "LLMHUB_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "LLMHUB_TOPIC_PREFIX": settings.topic_prefix,
            "LLMHUB_API_JWKS_URL": str(jwks_path),
            "LLMHUB_API_JWT_ISSUER": ISSUER,
            "LLMHUB_API_JWT_AUDIENCE": AUDIENCE,
        }
        log_path = workdir / "serve.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [str(LLMHUB_CLI), "serve", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llmhub serve did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Api(settings, url, keys, private_key, workdir, env)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(drop)


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["type"] and body["title"] and body["detail"]
    return body


# --- tenant isolation -----------------------------------------------------------------------


READS = (
    ("/api/v1/metrics", {"start": "-3d", "group_by": "tenant,application,model"}),
    ("/api/v1/metrics", {"start": "-3d", "granularity": "day", "group_by": "tenant"}),
    ("/api/v1/anomalies", {"start": "-3d", "flagged_only": "false"}),
    ("/api/v1/forecasts", {}),
    ("/api/v1/incidents", {}),
    ("/api/v1/budgets", {}),
)


def _params(params: dict[str, str]) -> dict[str, str]:
    out = dict(params)
    if out.get("start") == "-3d":
        out["start"] = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    return out


@pytest.mark.parametrize(("key", "tenant"), [("a_viewer", A), ("b_editor", B)])
def test_each_tenant_reads_only_its_own_rows_through_every_endpoint(
    api: Api, key: str, tenant: str
) -> None:
    with api.owner() as conn:
        owner_tenants = {
            row[0] for row in conn.execute("select tenant_id from analytics.anomalies")
        }
    assert owner_tenants == {A, B}  # both tenants exist, so the filtering is real
    with api.client(key) as client:
        for path, params in READS:
            response = client.get(path, params=_params(params))
            assert response.status_code == 200, (path, response.text)
            data = response.json()["data"]
            assert data, (path, "no rows: the test would prove nothing")
            if path == "/api/v1/metrics":
                assert {row["tenant"] for row in data} == {tenant}, path
            elif path == "/api/v1/anomalies":
                assert len(data) == 2, data
            elif path == "/api/v1/incidents":
                expected = [f"inc-{tenant}"] + (["inc-provider"] if tenant == A else [])
                assert [row["incident_id"] for row in data] == expected
                assert data[-1]["asset_ids"] == (None if tenant == A else ["app-chat"])
        # The tenant filter is the database's, not a parameter: asking for the other tenant's
        # application name (both use app-chat) still returns own rows only.
        body = client.get(
            "/api/v1/metrics", params=_params({"start": "-3d", "group_by": "tenant,application"})
        ).json()
        assert {row["tenant"] for row in body["data"]} == {tenant}
    with api.owner() as conn:
        own = conn.execute(
            "select sum(request_count) from marts.fct_llm_requests_daily where tenant_id = %s",
            (tenant,),
        ).fetchone()[0]
    with api.client(key) as client:
        body = client.get(
            "/api/v1/metrics",
            params=_params({"start": "-3d", "granularity": "day", "metrics": "requests"}),
        ).json()
    assert sum(row["requests"] for row in body["data"]) == own


def test_feedback_reaches_own_anomalies_only(api: Api) -> None:
    with api.client("a_read_editor") as client:
        (flagged,) = client.get("/api/v1/anomalies", params=_params({"start": "-3d"})).json()[
            "data"
        ]
        with api.client("b_editor") as other:
            # Tenant B cannot mark tenant A's anomaly, even knowing its id.
            _problem(
                other.post(
                    f"/api/v1/anomalies/{flagged['id']}/feedback",
                    json={"verdict": "false_positive"},
                ),
                404,
            )
        response = client.post(
            f"/api/v1/anomalies/{flagged['id']}/feedback",
            json={"verdict": "false_positive", "comment": "deploy window"},
        )
        assert response.status_code == 200, response.text
        again = client.get("/api/v1/anomalies", params=_params({"start": "-3d"})).json()
    assert again["data"][0]["feedback"]["verdict"] == "false_positive"
    with api.owner() as conn:
        rows = conn.execute(
            "select tenant_id, verdict, noted_by from analytics.anomaly_feedback"
        ).fetchall()
    assert len(rows) == 1 and rows[0][0] == A and rows[0][1] == "false_positive"
    # Regression: every API verdict read "llmhub_api"; it now names the key that wrote it.
    key_id = split_token(api.keys["a_read_editor"])[0]  # type: ignore[index]
    assert rows[0][2] == f"llmhub_api/key:{key_id}"
    # An OIDC editor's verdict is attributed to the token's subject.
    with api.client(token=api.jwt(A, "editor", sub="alice@example.com")) as client:
        response = client.post(
            f"/api/v1/anomalies/{flagged['id']}/feedback", json={"verdict": "true_positive"}
        )
        assert response.status_code == 200, response.text
    with api.owner() as conn:
        assert conn.execute("select noted_by from analytics.anomaly_feedback").fetchone() == (
            "llmhub_api/sub:alice@example.com",
        )
        # Only the API role's writes take the subject setting: another role claiming a name
        # is still stamped with its own.
        with conn.transaction():
            conn.execute("select set_config('llmhub.subject', 'sub:someone-else', true)")
            conn.execute("update analytics.anomaly_feedback set comment = 'x'")
        noted_by = conn.execute("select noted_by from analytics.anomaly_feedback").fetchone()
        assert noted_by == (conn.execute("select current_user").fetchone()[0],)


def test_percentiles_are_exact_per_mart_row_and_never_combined(api: Api) -> None:
    start = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    with api.client("a_viewer") as client:
        fine = client.get(
            "/api/v1/metrics",
            params={
                "start": start,
                "granularity": "day",
                "group_by": "tenant,application,version,model,provider",
            },
        ).json()["data"]
        coarse = client.get(
            "/api/v1/metrics", params={"start": start, "granularity": "day", "group_by": "tenant"}
        ).json()["data"]
    with api.owner() as conn:
        expected = dict(
            conn.execute(
                "select request_model, latency_p95_ms from marts.fct_llm_requests_daily "
                "where tenant_id = %s",
                (A,),
            ).fetchall()
        )
    assert {row["model"]: row["latency_p95_ms"] for row in fine} == {
        m: float(v) for m, v in expected.items()
    }
    assert all(row["mart_rows"] == 1 for row in fine)
    (day,) = [row for row in coarse if row["requests"] == sum(r["requests"] for r in fine)]
    assert day["mart_rows"] == 2 and day["latency_p95_ms"] is None


def test_cursor_pagination_walks_every_row_once(api: Api) -> None:
    params = _params({"start": "-3d", "group_by": "application,model", "metrics": "requests"})
    with api.client("a_viewer") as client:
        everything = client.get("/api/v1/metrics", params=params).json()["data"]
        pages: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get("/api/v1/metrics", params=query).json()
            pages += page["data"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        _problem(client.get("/api/v1/metrics", params={**params, "cursor": "garbage"}), 400)
    assert len(everything) > 2 and pages == everything


# --- authentication and roles ---------------------------------------------------------------


def test_credentials_roles_and_scopes_are_enforced(api: Api) -> None:
    with api.client() as anonymous:
        body = _problem(anonymous.get("/api/v1/metrics"), 401)
        assert "WWW-Authenticate" in anonymous.get("/api/v1/budgets").headers
        assert body["instance"] == "/api/v1/metrics"
    with api.client("a_expired") as expired:
        _problem(expired.get("/api/v1/budgets"), 401)
    with api.client(token="lhk_0000_wrong") as wrong:
        _problem(wrong.get("/api/v1/budgets"), 401)
    with api.client("a_viewer") as viewer:
        _problem(
            viewer.post(
                "/v1/traces", content=b"", headers={"content-type": "application/x-protobuf"}
            ),
            403,
        )
        _problem(
            viewer.post("/api/v1/anomalies/x/feedback", json={"verdict": "true_positive"}), 403
        )
    with api.client("a_read_editor") as reader:
        _problem(reader.post("/api/v1/events", content=b"{}"), 403)
    with api.client("a_viewer") as viewer:
        _problem(viewer.get("/api/v1/metrics", params={"granularity": "week"}), 422)
        _problem(viewer.get("/api/v1/nope"), 404)


def test_oidc_tokens_carry_tenant_and_role(api: Api) -> None:
    with api.client(token=api.jwt(B, "viewer")) as viewer:
        who = viewer.get("/api/v1/whoami").json()
        assert who == {"tenant_id": B, "role": "viewer", "scopes": ["read"]}
        data = viewer.get("/api/v1/anomalies", params=_params({"start": "-3d"})).json()["data"]
        assert data  # B's own anomalies
        _problem(
            viewer.post(
                f"/api/v1/anomalies/{data[0]['id']}/feedback", json={"verdict": "true_positive"}
            ),
            403,
        )
    with api.client(token=api.jwt(A, ["viewer", "editor"])) as editor:
        assert editor.get("/api/v1/whoami").json()["role"] == "editor"
    forged = api.jwt(A, "admin", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with api.client(token=forged) as client:
        _problem(client.get("/api/v1/whoami"), 401)
    with api.client(token=api.jwt(A, "viewer", aud="someone-else")) as client:
        _problem(client.get("/api/v1/whoami"), 401)
    with api.client(token=api.jwt(A, "superuser")) as client:
        _problem(client.get("/api/v1/whoami"), 403)


def test_tenant_admin_manages_own_keys_only(api: Api) -> None:
    b_key_id = api.keys["b_editor"].split("_")[1]
    with api.client("a_admin") as admin:
        response = admin.post(
            "/api/v1/keys", json={"name": "ci", "scopes": ["read"], "role": "viewer"}
        )
        assert response.status_code == 201, response.text
        issued = response.json()
        listed = admin.get("/api/v1/keys").json()["data"]
        # Revoking another tenant's key is refused as if it did not exist.
        _problem(admin.delete(f"/api/v1/keys/{b_key_id}"), 404)
        with api.client(token=issued["token"]) as ci:
            assert ci.get("/api/v1/whoami").status_code == 200  # its lookup is now cached
        assert admin.delete(f"/api/v1/keys/{issued['key_id']}").json()["revoked"] is True
        with api.client(token=issued["token"]) as ci:
            # Revoked through this process: refused at once, not after a poll.
            _problem(ci.get("/api/v1/whoami"), 401)
    assert issued["key_id"] in {k["key_id"] for k in listed}
    assert b_key_id not in {k["key_id"] for k in listed}
    with api.owner() as conn:
        tenant, revoked = conn.execute(
            "select tenant_id, revoked_at from api.api_keys where key_id = %s", (b_key_id,)
        ).fetchone()
    assert tenant == B and revoked is None
    with api.client("a_viewer") as viewer:
        _problem(viewer.get("/api/v1/keys"), 403)
    with api.client("a_editor") as editor:
        _problem(editor.post("/api/v1/keys", json={"name": "x", "scopes": ["read"]}), 403)


def test_revoked_key_is_refused_within_the_version_poll(api: Api) -> None:
    # Key lookups are cached (60 s at most); a revocation from outside the API process (the
    # CLI's revoke_key) must still take effect at the next poll of api.cache_versions (1 s).
    with api.owner() as conn:
        token, record = create_key(conn, A, "revoke-me", ("read",), "viewer")
    with api.client(token=token) as client:
        assert client.get("/api/v1/whoami").status_code == 200
        assert client.get("/api/v1/whoami").status_code == 200  # cached lookup
        with api.owner() as conn:
            assert revoke_key(conn, record.key_id)
        deadline = time.monotonic() + 20
        while client.get("/api/v1/whoami").status_code == 200:
            assert time.monotonic() < deadline, "revoked key still accepted after 20 s"
            time.sleep(0.2)
        _problem(client.get("/api/v1/whoami"), 401)


# --- the results cache ----------------------------------------------------------------------


def test_cached_answers_skip_the_router_but_not_its_checks(api: Api) -> None:
    """routes_query.MetricsHits answers hits outside FastAPI's router: the same bytes and
    headers as the route's answer, and still no answer without a credential that may read."""
    with api.owner() as conn:
        ingest_only, _ = create_key(conn, A, "ingest only", ("ingest",), "editor")
    time.sleep(2)  # the new key moved api.cache_versions: let every process see it first
    params = _params({"start": "-3d", "group_by": "provider", "metrics": "requests,cost_usd"})
    params["end"] = datetime.now(UTC).isoformat()  # the answer echoes the window asked for
    with api.client("a_viewer") as client:
        miss = client.get("/api/v1/metrics", params=params)
        hit = client.get("/api/v1/metrics", params=params)
    assert miss.headers["cache-status"] == "llmhub; fwd=miss"
    assert hit.headers["cache-status"] == "llmhub; hit"
    assert hit.content == miss.content and hit.json()["data"]
    assert hit.headers["content-type"] == miss.headers["content-type"] == "application/json"
    # The same (cached) question by A's ingest-only key, an expired key, no key, and with an
    # invalid parameter: the route's problems, never the cached answer.
    for token, extra, status in (
        (ingest_only, {}, 403),
        (api.keys["a_expired"], {}, 401),
        (None, {}, 401),
        (api.keys["a_viewer"], {"limit": "0"}, 422),
    ):
        with api.client(token=token) as client:
            _problem(client.get("/api/v1/metrics", params={**params, **extra}), status)


def test_tenant_read_sees_one_tenant_and_hands_back_a_clean_connection(api: Api) -> None:
    """``tenant_read`` pipelines BEGIN, the tenant, the statement and COMMIT in one round trip:
    row-level security still applies, and a failing statement (whose COMMIT never runs) does
    not return an open transaction, or its tenant setting, to the pool."""
    import asyncio
    from types import SimpleNamespace

    from psycopg.pq import TransactionStatus
    from psycopg_pool import AsyncConnectionPool

    from llmhub.api.auth import Principal
    from llmhub.api.deps import tenant_read

    async def run() -> None:
        pool = AsyncConnectionPool(
            api.env["LLMHUB_API_DATABASE_URL"],
            min_size=1,
            max_size=1,
            kwargs={"autocommit": True},
            open=False,
        )
        await pool.open(wait=True, timeout=30)
        try:
            svc: Any = SimpleNamespace(pool=pool)
            reader = Principal(A, "viewer", frozenset({"read"}), "test")
            rows, names = await tenant_read(
                svc,
                reader,
                "select distinct tenant_id from marts.fct_llm_requests_hourly "
                "where request_hour_at >= %(lo)s",
                {"lo": datetime(2000, 1, 1, tzinfo=UTC)},
            )
            assert (rows, names) == ([(A,)], ["tenant_id"])
            with pytest.raises(psycopg.errors.DivisionByZero):
                await tenant_read(svc, reader, "select 1 / (count(*) - count(*))", {})
            async with pool.connection() as conn:
                assert conn.info.transaction_status == TransactionStatus.IDLE
                cur = await conn.execute("select current_setting('llmhub.tenant_id', true)")
                assert (await cur.fetchone())[0] in (None, "")
        finally:
            await pool.close()

    asyncio.run(run())


def test_metrics_cache_is_per_tenant_and_follows_mart_rebuilds(api: Api) -> None:
    # dbt's post-hook bumped each mart's version in the build of the fixture.
    with api.owner() as conn:
        names = {r[0] for r in conn.execute("select name from api.cache_versions")}
    assert {"marts.fct_llm_requests_daily", "marts.fct_llm_requests_hourly"} <= names
    params = _params({"start": "-3d", "granularity": "day", "metrics": "requests,cost_usd"})
    params["group_by"] = "tenant,model"

    def ask(key: str) -> tuple[str, list[dict[str, Any]]]:
        with api.client(key) as client:
            response = client.get("/api/v1/metrics", params=params)
        assert response.status_code == 200, response.text
        return response.headers["cache-status"], response.json()["data"]

    ask("a_viewer")
    status, a_rows = ask("a_viewer")
    assert status == "llmhub; hit" and {r["tenant"] for r in a_rows} == {A}
    # The same question from tenant B: its own rows, never A's cached answer.
    status, b_rows = ask("b_editor")
    assert status == "llmhub; fwd=miss" and {r["tenant"] for r in b_rows} == {B}
    assert ask("b_editor")[1] == b_rows
    # Another credential of A (other role) shares A's answer.
    assert ask("a_read_editor") == ("llmhub; hit", a_rows)
    before = sum(r["requests"] for r in a_rows)
    with api.owner() as conn, conn.transaction():
        # What a dbt run does: new mart rows and, in the same transaction, the post-hook.
        conn.execute(
            "update marts.fct_llm_requests_daily set request_count = request_count + 1000 "
            "where tenant_id = %s",
            (A,),
        )
        conn.execute("select api.bump_cache_version('marts.fct_llm_requests_daily')")
    try:
        deadline = time.monotonic() + 20
        while True:
            status, rows = ask("a_viewer")
            if sum(r["requests"] for r in rows) != before:
                break
            assert time.monotonic() < deadline, "stale answer 20 s after the mart changed"
            time.sleep(0.2)
        assert sum(r["requests"] for r in rows) == before + 1000 * sum(r["mart_rows"] for r in rows)
        assert ask("a_viewer")[0] == "llmhub; hit"
    finally:
        with api.owner() as conn:
            conn.execute(
                "update marts.fct_llm_requests_daily set request_count = request_count - 1000 "
                "where tenant_id = %s",
                (A,),
            )
            conn.execute("select api.bump_cache_version('marts.fct_llm_requests_daily')")


# --- quotas ---------------------------------------------------------------------------------


def test_quotas_are_shared_through_the_database(api: Api) -> None:
    # Another API process drained tenant C's buckets (written here straight into the shared
    # table): this process must refuse, with Retry-After, without having seen those requests.
    with api.owner() as conn:
        for bucket in ("query", "ingest"):
            conn.execute(
                "insert into api.quota_buckets values ('tenant-c', %s, 0, now() + interval '1 h') "
                "on conflict (tenant_id, bucket) do update set tokens = 0, "
                "refilled_at = now() + interval '1 h'",
                (bucket,),
            )
    with api.client("c_editor") as client:
        response = client.get("/api/v1/budgets")
        _problem(response, 429)
        assert int(response.headers["retry-after"]) > 60
        event = make_event("telemetry", tenant_id="tenant-c")
        response = client.post("/api/v1/events", content=orjson.dumps(event))
        _problem(response, 429)
        assert int(response.headers["retry-after"]) >= 1
    with api.owner() as conn:
        conn.execute("delete from api.quota_buckets where tenant_id = 'tenant-c'")
        conn.execute(
            "insert into api.quota_months values ('tenant-c', "
            "date_trunc('month', now() at time zone 'utc')::date, 100000000)"
        )
    with api.client("c_editor") as client:
        response = client.post("/api/v1/events", content=orjson.dumps(event))
        assert _problem(response, 429)["type"].endswith("monthly-quota-exceeded")


def _serve(api: Api) -> tuple[subprocess.Popen[bytes], str]:
    """A second ``llmhub serve`` process on the same database (another API replica)."""
    port = free_port()
    log = (api.workdir / f"serve_{port}.log").open("wb")
    proc = subprocess.Popen(
        [str(LLMHUB_CLI), "serve", "--port", str(port)],
        env=api.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("second llmhub serve did not start")
        time.sleep(0.2)


def test_query_quota_is_one_bucket_across_api_processes(api: Api) -> None:
    # Two replicas leasing query tokens from one bucket of 5 (no refill to speak of) admit 5
    # queries between them, not 5 each, and refuse the rest with Retry-After.
    tenant = "tenant-c"
    with api.owner() as conn:
        conn.execute("delete from api.quota_buckets where tenant_id = %s", (tenant,))
        conn.execute(
            "insert into api.tenant_quotas (tenant_id, query_rate_per_s, query_burst) "
            "values (%s, 0.001, 5) on conflict (tenant_id) do update set "
            "query_rate_per_s = 0.001, query_burst = 5",
            (tenant,),
        )
    second, second_url = _serve(api)
    try:
        statuses = []
        for i in range(12):
            base = api.url if i % 2 == 0 else second_url
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {api.keys['c_editor']}"}
            ) as client:
                response = client.get("/api/v1/budgets")
            statuses.append(response.status_code)
            if response.status_code == 429:
                _problem(response, 429)
                assert int(response.headers["retry-after"]) > 60
        assert statuses.count(200) == 5 and statuses.count(429) == 7, statuses
        assert 200 in statuses[1::2]  # the second replica admitted some of the five
    finally:
        second.terminate()
        second.wait(timeout=15)
        with api.owner() as conn:
            conn.execute("delete from api.tenant_quotas where tenant_id = %s", (tenant,))
            conn.execute("delete from api.quota_buckets where tenant_id = %s", (tenant,))


def _quotas_cli(api: Api, *args: str) -> str:
    result = subprocess.run(
        [str(LLMHUB_CLI), "quotas", *args],
        env={**os.environ, "LLMHUB_DATABASE_URL": api.settings.database_url},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_tenant_quota_overrides_replace_the_defaults(api: Api) -> None:
    tenant = "tenant-c"
    with api.owner() as conn:
        conn.execute("delete from api.quota_buckets where tenant_id = %s", (tenant,))
        conn.execute("delete from api.quota_months where tenant_id = %s", (tenant,))
    try:
        shown = _quotas_cli(
            api,
            "set",
            tenant,
            "--query-rate",
            "0.001",
            "--query-burst",
            "1",
            "--monthly-events",
            "1",
        )
        assert "0.001*" in shown and tenant in shown
        event = make_event("telemetry", tenant_id=tenant)
        with api.client("c_editor") as client:
            assert client.get("/api/v1/budgets").status_code == 200
            # The second query in the same second: the tenant's own burst of 1 is spent.
            response = client.get("/api/v1/budgets")
            assert "0.001/s" in _problem(response, 429)["detail"]
            assert int(response.headers["retry-after"]) > 600
            two = b"\n".join(
                orjson.dumps(make_event("telemetry", tenant_id=tenant)) for _ in range(2)
            )
            response = client.post("/api/v1/events", content=two)
            assert _problem(response, 429)["type"].endswith("monthly-quota-exceeded")
            # Tenant A keeps the defaults meanwhile.
            with api.client("a_viewer") as other:
                for _ in range(3):
                    assert other.get("/api/v1/budgets").status_code == 200
            _quotas_cli(api, "reset", tenant)
            assert "had no override" not in _quotas_cli(api, "show", tenant)
            response = client.post("/api/v1/events", content=orjson.dumps(event))
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == 1
    finally:
        with api.owner() as conn:
            conn.execute("delete from api.tenant_quotas where tenant_id = %s", (tenant,))
            conn.execute("delete from api.quota_buckets where tenant_id = %s", (tenant,))
            conn.execute("delete from api.quota_months where tenant_id = %s", (tenant,))


# --- ingestion ------------------------------------------------------------------------------


def _topic_values(api: Api, family: str) -> list[tuple[bytes | None, bytes]]:
    topic = api.settings.topic(BY_FAMILY[family].topic)
    consumer = KafkaConsumer(
        bootstrap_servers=api.settings.kafka_bootstrap, enable_auto_commit=False
    )
    try:
        parts = [TopicPartition(topic, p) for p in range(BY_FAMILY[family].partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out: list[tuple[bytes | None, bytes]] = []
        idle = 0
        while idle < 3:
            batch = consumer.poll(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                out += [(r.key, r.value) for r in records]
        return out
    finally:
        consumer.close()


def test_events_endpoint_sends_accepted_events_as_produce_file(api: Api) -> None:
    good = orjson.dumps(make_event("telemetry", tenant_id=A, asset_id="events-api"))
    registry = orjson.dumps(make_event("registry", tenant_id=A, asset_id="events-api"))
    other = orjson.dumps(make_event("telemetry", tenant_id=B))
    bad = orjson.dumps(make_event("telemetry", tenant_id=A, body={"latency_ms": -5}))
    ndjson = b"\n".join([good, bad, b"", other, registry]) + b"\n"
    with api.client("a_editor") as client:
        response = client.post("/api/v1/events", content=ndjson)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 3)
    statuses = [(r["status"], r.get("error_class")) for r in body["results"]]
    assert statuses == [
        ("accepted", None),
        ("rejected", "schema"),
        ("rejected", "empty"),
        ("rejected", "forbidden_tenant"),
        ("accepted", None),
    ]
    assert "latency_ms" in body["results"][1]["error"]
    telemetry = [v for v in _topic_values(api, "telemetry") if b"events-api" in v[1]]
    # Byte for byte, unkeyed: what `llmhub produce file` would have sent for these lines.
    assert telemetry == [(None, good)]
    assert [v for v in _topic_values(api, "registry") if b"events-api" in v[1]] == [
        (None, registry)
    ]


def _genai_spans(tracer: Any, app: str) -> None:
    with tracer.start_as_current_span("chat gpt-4o") as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 20,
                "gen_ai.usage.cache_creation.input_tokens": 4,
                "llmhub.asset_id": app,
            }
        )
        time.sleep(0.02)
    with tracer.start_as_current_span("chat claude") as span:
        span.set_attributes(
            {
                "gen_ai.system": "anthropic",
                "gen_ai.request.model": "claude-3-5-sonnet",
                "gen_ai.usage.prompt_tokens": 50,
                "gen_ai.usage.completion_tokens": 10,
                "gen_ai.usage.input_tokens.cache_write": 3,
                "llmhub.asset_id": app,
            }
        )
    with tracer.start_as_current_span("chat no model") as span:
        span.set_attributes({"gen_ai.provider.name": "openai", "llmhub.asset_id": app})
    with tracer.start_as_current_span("GET /health"):
        pass


@pytest.mark.parametrize("encoding", ["protobuf+gzip", "json"])
def test_otel_sdk_exporter_spans_land_in_raw(api: Api, encoding: str) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    headers = {"Authorization": f"Bearer {api.keys['a_editor']}"}
    endpoint = f"{api.url}/v1/traces"
    if encoding == "json":
        from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers)
    else:
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as ProtoExporter,
        )

        exporter = ProtoExporter(endpoint=endpoint, headers=headers, compression=Compression.Gzip)
    app = f"otel-{encoding}"
    provider = TracerProvider(resource=Resource.create({"service.name": "ignored-service"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _genai_spans(provider.get_tracer("test"), app)
    provider.shutdown()
    api.ingest()
    with api.owner() as conn:
        rows = conn.execute(
            "select provider, request_model, input_tokens, output_tokens, latency_ms, "
            "attributes from raw.llm_requests where asset_id = %s order by request_model",
            (app,),
        ).fetchall()
    assert [r[:4] for r in rows] == [
        ("anthropic", "claude-3-5-sonnet", 50, 10),
        ("openai", "gpt-4o", 100, 20),
    ]
    assert rows[1][4] >= 20.0  # span duration, ms
    assert rows[0][5]["gen_ai.usage.cache_creation.input_tokens"] == 3
    assert rows[1][5]["gen_ai.usage.cache_creation.input_tokens"] == 4


def test_otlp_partial_success_reports_rejected_and_ignored(api: Api) -> None:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    now = time.time_ns()
    payload = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "p"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "0" * 31 + "1",
                                "spanId": "0" * 15 + str(i),
                                "name": "s",
                                "startTimeUnixNano": str(now),
                                "endTimeUnixNano": str(now + 1000),
                                "attributes": attrs,
                            }
                            for i, attrs in enumerate(
                                [
                                    [{"key": "gen_ai.system", "value": {"stringValue": "openai"}}],
                                    [{"key": "http.route", "value": {"stringValue": "/"}}],
                                ]
                            )
                        ]
                    }
                ],
            }
        ]
    }
    with api.client("a_editor") as client:
        response = client.post(
            "/v1/traces",
            content=orjson.dumps(payload),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
        result = json_format.Parse(response.text, ExportTraceServiceResponse())
        assert result.partial_success.rejected_spans == 1
        assert "gen_ai.request.model: Field required" in result.partial_success.error_message
        assert "1 non-GenAI spans ignored" in result.partial_success.error_message
        _problem(
            client.post(
                "/v1/traces",
                content=b"\x0a\xff",
                headers={"content-type": "application/x-protobuf"},
            ),
            400,
        )
        _problem(
            client.post("/v1/traces", content=b"{}", headers={"content-type": "text/plain"}), 415
        )


def test_otlp_metrics_are_stored_per_tenant(api: Api) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporter = OTLPMetricExporter(
        endpoint=f"{api.url}/v1/metrics",
        headers={"Authorization": f"Bearer {api.keys['b_editor']}"},
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("test")
    usage = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    usage.record(120, {"gen_ai.token.type": "input", "gen_ai.system": "openai"})
    meter.create_histogram("gen_ai.client.request.duration", unit="s").record(0.8)
    meter.create_counter("http.requests").add(1)
    provider.shutdown()
    with api.owner() as conn:
        rows = conn.execute(
            "select tenant_id, metric, point_count, point_sum, attributes "
            "from api.genai_metric_points order by metric"
        ).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (B, "gen_ai.client.operation.duration", 1, 0.8),
        (B, "gen_ai.client.token.usage", 1, 120.0),
    ]
    assert rows[1][4]["gen_ai.provider.name"] == "openai"


# --- an instrumented OpenAI client, end to end ----------------------------------------------


def _fake_openai(port: int) -> tuple[threading.Thread, Any]:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        import asyncio

        await asyncio.sleep(0.05)
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{body['model']}-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hello"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        }

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "fake OpenAI server did not start"
        time.sleep(0.05)
    return thread, server


def test_instrumented_openai_client_reaches_raw_and_marts(api: Api) -> None:
    import openai
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    port = free_port()
    thread, server = _fake_openai(port)
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(
                endpoint=f"{api.url}/v1/traces",
                headers={"Authorization": f"Bearer {api.keys['a_editor']}"},
            )
        )
    )
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="test-key")
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert completion.usage is not None and completion.usage.prompt_tokens == 12
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
        server.should_exit = True
        thread.join(timeout=10)
    api.ingest()
    with api.owner() as conn:
        row = conn.execute(
            "select tenant_id, provider, request_model, response_model, input_tokens, "
            "output_tokens, latency_ms, status from raw.llm_requests where asset_id = 'support-bot'"
        ).fetchone()
    assert row is not None, "the instrumented call did not reach raw.llm_requests"
    assert row[:6] == (A, "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 12, 5)
    assert row[6] >= 50.0 and row[7] == "ok"  # the fake server waits 50 ms
    run_dbt(api.workdir, *BUILD_MARTS)
    with api.client("a_viewer") as client:
        data = client.get(
            "/api/v1/metrics",
            params={
                "start": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
                "end": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                "group_by": "application,model",
                "application": "support-bot",
            },
        ).json()["data"]
    assert len(data) == 1
    assert (data[0]["model"], data[0]["requests"], data[0]["input_tokens"]) == (
        "gpt-4o-mini",
        1,
        12,
    )
    assert data[0]["output_tokens"] == 5 and data[0]["latency_p50_ms"] >= 50.0
