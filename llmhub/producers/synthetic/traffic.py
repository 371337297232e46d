"""The public entry point: generate and the SyntheticTraffic it returns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from llmhub.producers.sink import Message
from llmhub.producers.synthetic.catalog import _STREAM_PLAN, HOUR_MS, MINUTE_MS
from llmhub.producers.synthetic.hours import (
    _Billing,
    _governance_chunk,
    _registry_messages,
    _security_chunk,
    _telemetry_chunk,
)
from llmhub.producers.synthetic.plan import (
    Application,
    Incident,
    _build_plan,
    _Plan,
    _plan_incidents,
    _plan_rate_limits,
    _plan_rollout,
)
from llmhub.producers.synthetic.requests import from_epoch_ms, to_epoch_ms


@dataclass(frozen=True)
class SyntheticTraffic:
    """A planned window of synthetic traffic; messages are produced lazily, hour by hour.

    Attributes:
        events: Number of telemetry events (the other families come on top, about 6%).
        seed: The seed every random draw derives from.
        start: Window start (inclusive), UTC.
        end: Window end (exclusive), UTC.
        tenants: Tenant ids, busiest first.
        applications: Every tenant application with the models it calls.
        incidents: Ground truth of the injected incidents (empty when disabled).
        rate_limit_bursts: Short background 429 bursts; realistic noise, not graded incidents.
    """

    events: int
    seed: int
    start: datetime
    end: datetime
    tenants: tuple[str, ...]
    applications: tuple[Application, ...]
    incidents: list[Incident]
    rate_limit_bursts: list[Incident]
    _plan: _Plan = field(repr=False, compare=False)

    def iter_messages(self) -> Iterator[Message]:
        """Yield every message: registrations first, then one event-time hour at a time.

        Within an hour, telemetry, security, governance, registry updates and billing records
        follow each other, each family sorted by time; telemetry is sorted over the whole window.
        Billing records for a UTC day follow the hour that closes it (the last, partial day's at
        the end), stamped 15 minutes after midnight or at the window end, whichever is earlier.
        """
        plan = self._plan
        first, updates = _registry_messages(plan)
        yield from first
        billing = _Billing(plan)
        n_minutes = len(plan.minute_counts)
        for chunk, m0 in enumerate(range(0, n_minutes, 60)):
            m1 = min(m0 + 60, n_minutes)
            lo, hi = plan.start_ms + m0 * MINUTE_MS, plan.start_ms + m1 * MINUTE_MS
            tel = _telemetry_chunk(plan, chunk, m0, m1)
            yield from tel.messages
            yield from _security_chunk(plan, chunk, tel)
            yield from _governance_chunk(plan, chunk, tel)
            yield from (m for m in updates if lo <= (m.timestamp_ms or 0) < hi)
            billing.add(tel)
            yield from billing.close(hi)
        yield from billing.close(None)

    def __iter__(self) -> Iterator[Message]:
        return self.iter_messages()

    def messages(self) -> list[Message]:
        """All messages in one list (fine for tests and demos; stream large runs instead)."""
        return list(self.iter_messages())

    def ground_truth(self) -> dict[str, Any]:
        """The incidents and the window as a JSON-ready dict."""
        return {
            "seed": self.seed,
            "events": self.events,
            "start": self.start.isoformat().replace("+00:00", "Z"),
            "end": self.end.isoformat().replace("+00:00", "Z"),
            "incidents": [incident.to_dict() for incident in self.incidents],
            "rate_limit_bursts": [burst.to_dict() for burst in self.rate_limit_bursts],
        }

    def write_ground_truth(self, path: Path) -> None:
        """Write ``ground_truth()`` to ``path`` as indented JSON."""
        Path(path).write_text(json.dumps(self.ground_truth(), indent=2) + "\n")


def generate(
    events: int,
    days: float = 1.0,
    seed: int = 0,
    end: datetime | None = None,
    incidents: bool = True,
    incident_set: str = "gross",
    rollout_hours: float | None = None,
) -> SyntheticTraffic:
    """Plan ``events`` telemetry requests over ``days`` ending at ``end``, with the other families.

    Arrivals follow a daily cycle (peak 15:00 UTC, trough 03:00 at about a quarter of the peak)
    and a weekend dip (45% of a weekday); 4-6 tenants with Zipf-like shares run 2-4 applications
    each over a mix of OpenAI, Anthropic, Google and Mistral models. Security alerts (~3.5% of
    requests), policy violations (~2.5%), daily billing records per tenant and model (within
    +-2% of the metered cost) and registry events come on top, so telemetry is about 94% of the
    messages. Nothing is generated until the result is iterated.

    Args:
        events: Exact number of telemetry events.
        days: Window length in days (rounded to whole minutes, at least one).
        seed: Non-negative seed; the same seed and ``end`` give identical messages.
        end: Window end; default now (UTC) truncated to the minute. Naive times are UTC.
        incidents: Inject a latency regression, a cost spike, an error storm and a security
            burst, one each, in separate time slots.
        incident_set: ``gross`` (those four) or ``realistic`` (those and subtle ones on one
            route each: latency x1.3-1.5, cost +25-40%, error rate 2-5%, a latency drift, a
            cost level shift to the window's end, a route whose traffic stops for hours).
        rollout_hours: Also roll out a new version of the busiest tenant's main chat model this
            many hours before ``end`` (plus 5-20 minutes), slowing its requests 2.5x until
            ``end``: a registry update and its effect, for the correlation engine (an incident
            ``model_rollout`` in the ground truth). None: no rollout, the messages of the other
            arguments are unchanged.

    Returns:
        The planned traffic, with its ground-truth incidents.
    """
    if events < 0:
        raise ValueError("events must be >= 0")
    if days <= 0:
        raise ValueError("days must be > 0")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    if end is None:
        end = datetime.now(UTC).replace(second=0, microsecond=0)
    end_ms = to_epoch_ms(end)
    n_minutes = max(1, round(days * 1440))
    start_ms = end_ms - n_minutes * MINUTE_MS
    plan = _build_plan(events, start_ms, n_minutes, seed)
    truth = []
    if incidents:
        rng = np.random.default_rng([seed, _STREAM_PLAN, 1])
        truth = _plan_incidents(plan, rng, incident_set)
    if rollout_hours is not None:
        rollout_rng = np.random.default_rng([seed, _STREAM_PLAN, 3])
        truth.append(_plan_rollout(plan, rollout_rng, int(rollout_hours * HOUR_MS)))
    bursts_rng = np.random.default_rng([seed, _STREAM_PLAN, 2])
    bursts = _plan_rate_limits(plan, bursts_rng, n_minutes / 1440)
    return SyntheticTraffic(
        events=events,
        seed=seed,
        start=from_epoch_ms(start_ms),
        end=from_epoch_ms(end_ms),
        tenants=tuple(plan.tenants),
        applications=tuple(plan.apps),
        incidents=truth,
        rate_limit_bursts=bursts,
        _plan=plan,
    )
