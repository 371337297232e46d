"""The read path's in-process caches and what invalidates them.

``CacheVersions`` mirrors ``api.cache_versions`` (migration 0015): one counter per source, bumped
in the transaction that changes it (dbt's post-hook for each mart, a trigger on ``api.api_keys``).
Each API process polls it (``poll``) and calls its listeners when a counter moved.

``ResultCache`` holds pre-encoded answers keyed by ``(tenant, source version, normalised
query)``: a tenant's entry is only ever found with that tenant's own key (the tenant comes from
the credential, never the request), and an entry of an older mart version is never found again
(and is dropped as soon as the version moves). Concurrent misses of one key run one query
(``get_or_load``): a dashboard fleet refreshing after a dbt run does not stampede PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

VERSIONS_SQL = "select name, version from api.cache_versions"


@dataclass
class CacheVersions:
    """The last polled ``api.cache_versions``; ``fresh`` is False when polling has failed for
    ``stale_after`` seconds (callers then bypass what the versions guard)."""

    stale_after: float = 5.0
    versions: dict[str, int] = field(default_factory=dict)
    polled_at: float = float("-inf")
    listeners: list[Callable[[set[str]], None]] = field(default_factory=list)

    def get(self, name: str) -> int:
        return self.versions.get(name, 0)

    @property
    def fresh(self) -> bool:
        return time.monotonic() - self.polled_at < self.stale_after

    def update(self, rows: list[tuple[str, int]], now: float | None = None) -> set[str]:
        """Take a poll's rows; returns (and tells the listeners) the names whose version moved."""
        new = dict(rows)
        changed = {
            n for n in new.keys() | self.versions.keys() if new.get(n) != self.versions.get(n)
        }
        first = self.polled_at == float("-inf")
        self.versions = new
        self.polled_at = time.monotonic() if now is None else now
        if changed and not first:
            for listener in self.listeners:
                listener(changed)
        return changed


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    bypassed: int = 0

    @property
    def hit_ratio(self) -> float | None:
        total = self.hits + self.misses
        return round(self.hits / total, 4) if total else None


class ResultCache:
    """A byte-bounded LRU of encoded answers with single-flight loading.

    Args:
        max_bytes: total size of the cached values; 0 disables the cache (every call loads).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0
        self._loading: dict[Hashable, asyncio.Future[bytes]] = {}
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._size = 0

    def get(self, key: Hashable) -> bytes | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: bytes) -> None:
        if len(value) > self.max_bytes // 4:
            return  # one huge answer would evict everything else
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= len(old)
        self._entries[key] = value
        self._size += len(value)
        while self._size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._size -= len(evicted)

    async def get_or_load(
        self, key: Hashable, load: Callable[[], Awaitable[bytes]]
    ) -> tuple[bytes, bool]:
        """The cached value of ``key`` or ``load()``'s (stored); True when it was a hit.

        A load that raises stores nothing; callers waiting on it get the same exception."""
        if not self.max_bytes:
            self.stats.bypassed += 1
            return await load(), False
        value = self.get(key)
        if value is not None:
            self.stats.hits += 1
            return value, True
        self.stats.misses += 1
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending), False
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            self._loading.pop(key, None)
        future.set_result(value)
        self.put(key, value)
        return value, False


async def poll_versions(
    versions: CacheVersions, fetch: Callable[[], Awaitable[list[tuple[str, int]]]], every: float
) -> None:
    """Poll forever (the app's lifespan cancels it); a failed poll is logged and retried."""
    while True:
        try:
            versions.update(await fetch())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database away for a moment: callers see fresh=False
            log.warning("cache version poll failed: %s", type(exc).__name__)
        await asyncio.sleep(every)
