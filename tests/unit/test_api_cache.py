"""The API's read-path caches: results keyed by tenant, mart version and normalised question;
key lookups dropped when ``api.api_keys`` changes; leased query tokens."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi import Request

from llmhub.api.auth import KEYS_VERSION, Authenticator
from llmhub.api.cache import CacheVersions, ResultCache
from llmhub.api.keys import hash_secret
from llmhub.api.problems import Problem
from llmhub.api.quotas import Quotas
from llmhub.api.routes_query import encode_cursor, metrics_cache_key, metrics_query
from llmhub.config import ApiSettings

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _query(**overrides: Any) -> Any:
    args: dict[str, Any] = {
        "lo": NOW - timedelta(days=1),
        "hi": NOW,
        "granularity": "hour",
        "group_by": ["application,model"],
        "metrics": None,
        "filters": (None, None, None),
        "limit": 1000,
        "cursor": None,
    }
    args.update(overrides)
    return metrics_query(**args)


def test_equivalent_questions_share_a_key() -> None:
    # "The last 24 hours" asked at 10:00:05 and at 10:40 selects the same hourly buckets.
    a = _query(lo=NOW - timedelta(days=1) + timedelta(seconds=5), hi=NOW + timedelta(seconds=5))
    b = _query(lo=NOW - timedelta(days=1) + timedelta(minutes=40), hi=NOW + timedelta(minutes=40))
    assert a.bounds == b.bounds == (NOW - timedelta(hours=23), NOW + timedelta(hours=1))
    assert metrics_cache_key("t", 1, a) == metrics_cache_key("t", 1, b)
    # Filter values are a set; their order and repetition do not matter.
    f1 = _query(filters=(["app-2,app-1"], None, None))
    f2 = _query(filters=(["app-1", "app-2", "app-1"], None, None))
    assert metrics_cache_key("t", 1, f1) == metrics_cache_key("t", 1, f2)
    # Daily: the day of the start, the day after a partial last day.
    day = _query(granularity="day", lo=NOW - timedelta(days=7), hi=NOW)
    assert day.bounds == (date(2026, 11, 23), date(2026, 12, 1))


@pytest.mark.parametrize(
    "other",
    [
        {"hi": NOW + timedelta(hours=1)},
        {"granularity": "day"},
        {"group_by": ["model,application"]},
        {"group_by": ["application"]},
        {"metrics": ["requests"]},
        {"filters": (["app-1"], None, None)},
        {"filters": (None, ["app-1"], None)},
        {"limit": 10},
        {"cursor": encode_cursor([NOW.isoformat(), "app-1", "m"])},
    ],
)
def test_different_questions_have_different_keys(other: dict[str, Any]) -> None:
    assert metrics_cache_key("t", 1, _query()) != metrics_cache_key("t", 1, _query(**other))


def test_key_names_the_tenant_and_the_mart_version() -> None:
    query = _query()
    assert metrics_cache_key("tenant-a", 3, query) != metrics_cache_key("tenant-b", 3, query)
    assert metrics_cache_key("tenant-a", 3, query) != metrics_cache_key("tenant-a", 4, query)


def test_unknown_dimension_or_foreign_cursor_is_a_problem() -> None:
    with pytest.raises(Problem):
        _query(group_by=["week"])
    with pytest.raises(Problem):
        _query(cursor=encode_cursor(["x"]))


async def test_one_tenants_answer_is_never_served_to_another() -> None:
    cache = ResultCache(1 << 20)
    query = _query()
    loads: list[str] = []

    def loader(tenant: str) -> Any:
        async def load() -> bytes:
            loads.append(tenant)
            return f"rows of {tenant}".encode()

        return load

    for _ in range(3):
        for tenant in ("tenant-a", "tenant-b"):
            value, _hit = await cache.get_or_load(
                metrics_cache_key(tenant, 1, query), loader(tenant)
            )
            assert value == f"rows of {tenant}".encode()
    assert loads == ["tenant-a", "tenant-b"]
    assert (cache.stats.hits, cache.stats.misses) == (4, 2)


async def test_a_mart_rebuild_drops_the_cached_answers() -> None:
    versions = CacheVersions()
    cache = ResultCache(1 << 20)
    versions.listeners.append(lambda changed: cache.clear())
    versions.update([("marts.fct_llm_requests_hourly", 1), (KEYS_VERSION, 1)])
    key = metrics_cache_key("t", versions.get("marts.fct_llm_requests_hourly"), _query())
    cache.put(key, b"old")
    assert versions.update([("marts.fct_llm_requests_hourly", 1), (KEYS_VERSION, 1)]) == set()
    assert cache.get(key) == b"old"
    changed = versions.update([("marts.fct_llm_requests_hourly", 2), (KEYS_VERSION, 1)])
    assert changed == {"marts.fct_llm_requests_hourly"}
    assert cache.get(key) is None and len(cache) == 0
    new_key = metrics_cache_key("t", versions.get("marts.fct_llm_requests_hourly"), _query())
    assert new_key != key


def test_versions_go_stale_when_polling_stops() -> None:
    versions = CacheVersions(stale_after=5.0)
    assert not versions.fresh  # never polled: nothing may be served from a cache
    versions.update([], now=time.monotonic())
    assert versions.fresh
    versions.update([], now=time.monotonic() - 6)
    assert not versions.fresh


async def test_concurrent_misses_of_one_key_load_once() -> None:
    cache = ResultCache(1 << 20)
    calls = 0
    release = asyncio.Event()

    async def load() -> bytes:
        nonlocal calls
        calls += 1
        await release.wait()
        return b"page"

    waiting = [asyncio.create_task(cache.get_or_load("k", load)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiting)
    assert calls == 1 and all(value == b"page" for value, _ in results)


async def test_a_failed_load_stores_nothing() -> None:
    cache = ResultCache(1 << 20)

    async def fail() -> bytes:
        raise Problem(429, "rate-limited", "no")

    with pytest.raises(Problem):
        await cache.get_or_load("k", fail)
    assert cache.get("k") is None


def test_cache_is_bounded_by_bytes() -> None:
    cache = ResultCache(1000)
    for i in range(10):
        cache.put(i, b"x" * 200)
    assert len(cache) == 5 and cache.get(0) is None and cache.get(9) is not None
    cache.put("huge", b"x" * 600)  # more than a quarter of the cache: not kept
    assert cache.get("huge") is None


# --- the key lookup cache ---------------------------------------------------------------------


class FakeKeys:
    """``api.api_keys`` as the authenticator's pool sees it, counting lookups."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple] = {}
        self.lookups = 0

    @asynccontextmanager
    async def connection(self) -> Any:
        yield self

    async def execute(self, statement: str, params: tuple) -> Any:
        self.lookups += 1
        row = self.rows.get(params[0])

        class Cursor:
            async def fetchone(self) -> tuple | None:
                return row

        return Cursor()


def _request(token: str) -> Request:
    headers = [(b"authorization", f"Bearer {token}".encode())]
    return Request({"type": "http", "headers": headers, "method": "GET", "path": "/"})


async def test_revoked_key_is_rejected_once_the_keys_version_moves() -> None:
    keys = FakeKeys()
    keys.rows["k1"] = ("tenant-a", hash_secret("s1"), ["read"], "viewer", None, False)
    versions = CacheVersions()
    versions.update([(KEYS_VERSION, 1)])
    auth = Authenticator(ApiSettings(), keys, versions)  # type: ignore[arg-type]
    for _ in range(3):
        assert (await auth.authenticate(_request("lhk_k1_s1"))).tenant_id == "tenant-a"
    assert keys.lookups == 1
    # Revoked elsewhere (llmhub keys revoke, another API process): the trigger bumps the
    # version, this process's next poll sees it and looks the key up again.
    keys.rows["k1"] = ("tenant-a", hash_secret("s1"), ["read"], "viewer", None, True)
    versions.update([(KEYS_VERSION, 2)])
    with pytest.raises(Problem) as refused:
        await auth.authenticate(_request("lhk_k1_s1"))
    assert refused.value.status == 401 and keys.lookups == 2


async def test_key_lookups_are_not_cached_while_versions_are_stale() -> None:
    keys = FakeKeys()
    keys.rows["k1"] = ("tenant-a", hash_secret("s1"), ["read"], "viewer", None, False)
    auth = Authenticator(ApiSettings(), keys, CacheVersions())  # type: ignore[arg-type]
    for _ in range(3):
        await auth.authenticate(_request("lhk_k1_s1"))
    assert keys.lookups == 3


async def test_cached_key_expires_on_time_and_wrong_secret_fails() -> None:
    keys = FakeKeys()
    keys.rows["k1"] = ("tenant-a", hash_secret("s1"), ["read"], "viewer", time.time() - 1, False)
    keys.rows["k2"] = ("tenant-a", hash_secret("s2"), ["read"], "viewer", time.time() + 60, False)
    versions = CacheVersions()
    versions.update([])
    auth = Authenticator(ApiSettings(), keys, versions)  # type: ignore[arg-type]
    with pytest.raises(Problem):
        await auth.authenticate(_request("lhk_k1_s1"))
    assert (await auth.authenticate(_request("lhk_k2_s2"))).subject == "key:k2"
    with pytest.raises(Problem):
        await auth.authenticate(_request("lhk_k2_wrong"))


# --- leased query tokens ----------------------------------------------------------------------


class FakeBucket:
    """``api.admit_query_lease`` over one shared bucket (no refill: a fixed number of tokens)."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.calls = 0

    @asynccontextmanager
    async def connection(self) -> Any:
        yield self

    async def execute(self, statement: str, params: tuple) -> Any:
        self.calls += 1
        granted = min(params[1], self.tokens)
        self.tokens -= granted
        row = (granted, 0.0 if granted else 2.5, 50.0, 200.0)

        class Cursor:
            async def fetchone(self) -> tuple:
                return row

        return Cursor()


async def test_processes_sharing_a_bucket_never_admit_more_than_it_grants() -> None:
    bucket = FakeBucket(tokens=10)
    settings = ApiSettings(query_lease=4)
    processes = [Quotas(settings, bucket) for _ in range(2)]  # type: ignore[arg-type]
    admitted = refused = 0
    for i in range(30):
        try:
            await processes[i % 2].query("tenant-a")
            admitted += 1
        except Problem as exc:
            assert exc.status == 429 and exc.headers["Retry-After"] == "3"
            refused += 1
    assert admitted == 10 and refused == 20
    assert bucket.calls < 30  # leases: most admitted queries made no round trip


class YieldingBucket(FakeBucket):
    """A bucket whose round trip takes a turn of the event loop, and which records which task
    asked: the request's own, or a background refill."""

    def __init__(self, tokens: int) -> None:
        super().__init__(tokens)
        self.askers: list[asyncio.Task[Any] | None] = []

    async def execute(self, statement: str, params: tuple) -> Any:
        self.askers.append(asyncio.current_task())
        await asyncio.sleep(0)
        return await super().execute(statement, params)


async def test_next_lease_is_taken_ahead_of_need_off_the_request_path() -> None:
    bucket = YieldingBucket(tokens=1000)
    quotas = Quotas(ApiSettings(query_lease=8), bucket)  # type: ignore[arg-type]
    me = asyncio.current_task()
    for _ in range(100):
        await quotas.query("tenant-a")
        await asyncio.sleep(0)  # requests arrive while the loop runs other tasks
    # Only the very first query waited for a lease; every later lease came in the background.
    assert bucket.askers[0] is me and me not in bucket.askers[1:]
    assert len(bucket.askers) >= 100 // 8
    # Never more tokens held than 1.25 leases, all of them taken from the bucket.
    assert 1000 - bucket.tokens - 100 <= 8 + 8 // 4


async def test_refilled_leases_never_admit_more_than_the_bucket_grants() -> None:
    bucket = YieldingBucket(tokens=10)
    processes = [Quotas(ApiSettings(query_lease=4), bucket) for _ in range(2)]  # type: ignore[arg-type]
    admitted = 0
    for i in range(40):
        try:
            await processes[i % 2].query("tenant-a")
            admitted += 1
        except Problem as exc:
            assert exc.status == 429
        await asyncio.sleep(0)
    assert bucket.tokens == 0 and 10 - 2 * (4 + 1) <= admitted <= 10


def test_grain_questions_read_mart_rows_without_aggregating() -> None:
    grain = _query(group_by=["provider,model,version,application"])
    coarse = _query(group_by=["application,model"])
    assert grain.one_mart_row_each and not coarse.one_mart_row_each
    text = grain.sql()[0].as_string(None)
    assert "group by" not in text and "sum(" not in text and "1 as mart_rows" in text
    assert "group by" in coarse.sql()[0].as_string(None)


def test_statement_is_rendered_once_per_shape_with_this_questions_parameters() -> None:
    a = _query(filters=(["app-1"], None, None))
    later = _query(
        lo=NOW - timedelta(days=3),
        hi=NOW - timedelta(days=1),
        filters=(["app-2", "app-3"], None, None),
    )
    text, params = a.statement()
    assert text == a.sql()[0].as_bytes(None) and params == a.sql()[1]
    # Same shape, other window and filter values: the same statement, its own parameters.
    text_later, params_later = later.statement()
    assert text_later is text
    assert params_later["asset_id"] == ["app-2", "app-3"] and params_later["lo"] != params["lo"]
    # Another shape (a filter more, a page after a cursor, other metrics): another statement.
    for other in (
        _query(filters=(["app-1"], ["model-1"], None)),
        _query(filters=(["app-1"], None, None), cursor=encode_cursor([NOW.isoformat(), "a", "m"])),
        _query(filters=(["app-1"], None, None), metrics=["requests"]),
    ):
        assert other.statement()[0] == other.sql()[0].as_bytes(None) != text


def test_metrics_query_string_is_validated_as_fastapi_did() -> None:
    from fastapi.exceptions import RequestValidationError

    from llmhub.api.routes_query import metrics_params

    def request(qs: str) -> Request:
        return Request({"type": "http", "query_string": qs.encode(), "headers": []})

    params = metrics_params(
        request("start=2026-11-29T10:00:00Z&application=a&application=b,c&limit=5&x=1")
    )
    assert params.start == datetime(2026, 11, 29, 10, tzinfo=UTC)
    assert params.application == ["a", "b,c"] and params.limit == 5
    assert params.granularity == "hour" and params.group_by is None
    for bad in ("limit=0", "limit=10001", "granularity=week", "start=-3d"):
        with pytest.raises(RequestValidationError) as invalid:
            metrics_params(request(bad))
        assert invalid.value.errors()[0]["loc"][0] == "query"
