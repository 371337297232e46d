"""Correlated incident scenarios with ground truth, for the correlation engine.

Builds on the synthetic producer's public API: the tenants and applications of
``synthetic.generate`` (same seed, same world) and its model catalogue (``MODELS``: provider,
prices, latency profile). On top of that world it lays out hourly request series over ``days``
days and, in the last day, injects the scenarios the issue names, each with its root cause and
members:

- ``model_rollout``: a tenant's model gets a new version; its applications slow down (x2.5
  latency) for four hours until the rollback;
- ``provider_outage``: one provider's models get slow and fail (x3 latency, 25% errors) for every
  tenant for three hours; retries add 50% requests (retry-driven cost);
- ``prompt_change``: an application's prompt template changes and doubles its tokens and cost;
- ``jailbreak_campaign``: one user floods an application with jailbreak attempts: alerts, policy
  violations and 60% more (refused) requests for two hours;
- ``compliance_cascade``: a policy change makes the tenant's applications violate it;
- ``unrelated``: two token spikes on other applications, in the same hours as the others,
  which must stay separate incidents;
- ``expected_spike``: a scheduled batch the forecast expected (inside its interval): no
  incident; and two registry changes that change nothing (no incident either).

Generation is frame-level: it yields the hourly series (what ``fct_llm_requests_hourly``
holds), the registry / security / policy events, request-count forecasts, and, via
``detect_anomalies``, the flagged anomalies of a seasonal robust z-score detector standing in for
the champion detector. ``scenario_messages`` turns the same world into the Kafka messages of the
event contract (one telemetry event per request, each security alert, violation and registry
change) for the pipeline mode of the evaluation (``llmhub.incidents.pipeline_eval``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmhub.contract.models import SCHEMA_VERSION
from llmhub.contract.topics import BY_FAMILY
from llmhub.producers import synthetic
from llmhub.producers.sink import Message, event_message
from llmhub.producers.synthetic.catalog import ERROR_TYPES, MODEL_INDEX, MODELS
from llmhub.producers.synthetic.requests import (
    TelemetryBatch,
    encode_telemetry,
    request_cost,
    uuid4_strings,
)

METRICS = ["request_count", "tokens", "cost_usd", "error_rate", "latency_p95_ms"]
REQUESTS_PER_HOUR = 40_000
SECURITY_RATE = 0.0008
VIOLATION_RATE = 0.0006
POLICIES = ("pol-pii-prompt", "pol-approved-models", "pol-acceptable-use", "pol-token-budget")
ALERT_TYPES = ("prompt_injection", "pii_leak", "toxic_output", "jailbreak")
KINDS = (
    "model_rollout",
    "provider_outage",
    "prompt_change",
    "jailbreak_campaign",
    "compliance_cascade",
    "unrelated",
)


@dataclass(frozen=True)
class Scenario:
    """Ground truth of one injected scenario.

    ``members`` are ``tenant/asset/model/metric`` series whose flagged hours in ``[start, end)``
    (plus one hour of detection lag) belong to it; ``event_ids`` the events that do.
    ``expects_incident`` is False for what must not open an incident.
    """

    scenario_id: str
    kind: str
    root_cause_type: str
    root_cause_entity: str
    tenant_id: str
    start: str
    end: str
    members: list[str]
    event_ids: list[str]
    excess_cost_usd: float
    expects_incident: bool = True


@dataclass
class ScenarioData:
    """Frames the pipeline would hold after one scenario day, and the ground truth."""

    seed: int
    start: pd.Timestamp
    end: pd.Timestamp
    scenario_start: pd.Timestamp
    series: pd.DataFrame
    events: pd.DataFrame
    forecasts: pd.DataFrame
    providers: dict[str, str]
    scenarios: list[Scenario] = field(default_factory=list)
    #: Per row of ``series``: the input and output tokens of one successful request.
    request_shape: pd.DataFrame | None = None

    def ground_truth(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "scenario_start": self.scenario_start.isoformat(),
            "generation": "frames (series, events, forecasts); anomalies from detect_anomalies",
            "scenarios": [asdict(s) for s in self.scenarios],
        }

    def write_ground_truth(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.ground_truth(), indent=2) + "\n")


def providers() -> dict[str, str]:
    """Model name -> provider of the synthetic catalogue."""
    return {m.name: m.provider for m in MODELS}


class _Builder:
    def __init__(
        self, seed: int, days: int, end: datetime, requests_per_hour: float = REQUESTS_PER_HOUR
    ) -> None:
        self.rng = np.random.default_rng([seed, 77])
        traffic = synthetic.generate(
            events=days * 24, days=days, seed=seed, end=end, incidents=False
        )
        self.apps = list(traffic.applications)
        self.tenants = list(traffic.tenants)
        self.end = pd.Timestamp(traffic.end).floor("h")
        self.hours = pd.date_range(
            end=self.end - pd.Timedelta(hours=1), periods=days * 24, freq="h"
        )
        self.day0 = self.hours[-24]
        rows = []
        for app in self.apps:
            tin_scale = float(self.rng.uniform(0.6, 2.5))
            tout_scale = float(self.rng.uniform(0.5, 1.6))
            weights = [
                0.75 if i == 0 else 0.25 / max(1, len(app.models) - 1)
                for i in range(len(app.models))
            ]
            for model, w in zip(app.models, weights, strict=True):
                rows.append(
                    (app.tenant_id, app.asset_id, model, app.share * w, tin_scale, tout_scale)
                )
        self.routes = pd.DataFrame(
            rows, columns=["tenant_id", "asset_id", "request_model", "share", "tin", "tout"]
        )
        self.routes = self.routes[self.routes["share"] * REQUESTS_PER_HOUR >= 60].reset_index(
            drop=True
        )
        n_r, n_h = len(self.routes), len(self.hours)
        hod = self.hours.hour.to_numpy()
        daily = 1.0 + 0.5 * np.cos(2 * np.pi * (hod - 15.0) / 24.0)
        # The routes are chosen at the default volume, so a smaller volume keeps the same world
        # (same routes, same random draws, same scenarios), only scaled.
        self.requests = (
            requests_per_hour
            * self.routes["share"].to_numpy()[:, None]
            * daily[None, :]
            * self.rng.lognormal(0, 0.04, (n_r, n_h))
        )
        spec = [MODELS[MODEL_INDEX[m]] for m in self.routes["request_model"]]
        embed = np.array([s.operation == "embeddings" for s in spec])
        self.tin = np.where(embed, 350.0, 900.0 * self.routes["tin"].to_numpy())[
            :, None
        ] * self.rng.lognormal(0, 0.03, (n_r, n_h))
        self.tout = np.where(embed, 0.0, 220.0 * self.routes["tout"].to_numpy())[
            :, None
        ] * self.rng.lognormal(0, 0.03, (n_r, n_h))
        self.p_in = np.array([s.input_usd_per_mtok for s in spec])[:, None] / 1e6
        self.p_out = np.array([s.output_usd_per_mtok for s in spec])[:, None] / 1e6
        base_latency = (
            np.array([s.ttft_ms for s in spec])[:, None]
            + np.array([s.ms_per_output_token for s in spec])[:, None] * self.tout
        )
        self.latency = 1.8 * base_latency * self.rng.lognormal(0, 0.04, (n_r, n_h))
        self.error_p = np.full((n_r, n_h), 0.012)
        self.retry = np.ones((n_r, n_h))
        self.events: list[dict[str, Any]] = []
        self.scenarios: list[Scenario] = []
        self.used: set[int] = set()
        self.forecast_override: list[tuple[int, int]] = []
        self.extra_alerts = np.zeros((n_r, n_h))
        self.extra_violations: list[tuple[int, int, str, float]] = []
        self.counter = 0

    # -- helpers ------------------------------------------------------------------------------
    def _id(self) -> str:
        self.counter += 1
        return f"00000000-0000-4000-8000-{self.counter:012d}"

    def _slot(self, length: int) -> int:
        """Hour index (into self.hours) of a scenario start in the scenario day."""
        first = len(self.hours) - 24 + 2
        return int(self.rng.integers(first, len(self.hours) - length - 1))

    def _event(
        self, family: str, event_type: str, at: pd.Timestamp, tenant: str, asset: str, **kw: Any
    ) -> str:
        event_id = self._id()
        self.events.append(
            {
                "event_id": event_id,
                "occurred_at": at,
                "family": family,
                "event_type": event_type,
                "tenant_id": tenant,
                "asset_id": asset,
                "severity": kw.pop("severity", "info"),
                **kw,
            }
        )
        return event_id

    def _members(self, rows: np.ndarray, metrics: list[str]) -> list[str]:
        r = self.routes.iloc[rows]
        return [
            f"{t}/{a}/{m}/{metric}"
            for t, a, m in zip(r["tenant_id"], r["asset_id"], r["request_model"], strict=True)
            for metric in metrics
        ]

    def _cost(self) -> np.ndarray:
        ok = self.requests * self.retry * (1 - self.error_p)
        return ok * (self.tin * self.p_in + self.tout * self.p_out)

    def _excess(self, rows: np.ndarray, h0: int, h1: int, before: np.ndarray) -> float:
        return float((self._cost()[rows, h0:h1] - before[rows, h0:h1]).sum())

    def _add(
        self,
        kind: str,
        cause_type: str,
        entity: str,
        tenant: str,
        h0: int,
        h1: int,
        members: list[str],
        event_ids: list[str],
        excess: float,
        expects: bool = True,
    ) -> None:
        self.scenarios.append(
            Scenario(
                scenario_id=f"{kind}-{len(self.scenarios)}",
                kind=kind,
                root_cause_type=cause_type,
                root_cause_entity=entity,
                tenant_id=tenant,
                start=self.hours[h0].isoformat(),
                end=(self.hours[h1 - 1] + pd.Timedelta(hours=1)).isoformat(),
                members=members,
                event_ids=event_ids,
                excess_cost_usd=round(excess, 6),
                expects_incident=expects,
            )
        )

    def _rows(self, **eq: Any) -> np.ndarray:
        hit = np.ones(len(self.routes), dtype=bool)
        for column, value in eq.items():
            hit &= (self.routes[column] == value).to_numpy()
        return np.flatnonzero(hit)

    def _chat(self) -> np.ndarray:
        return np.array(
            [MODELS[MODEL_INDEX[m]].operation == "chat" for m in self.routes["request_model"]]
        )

    # -- scenarios ----------------------------------------------------------------------------
    def provider_outage(self) -> None:
        prov = self.routes["request_model"].map(lambda m: MODELS[MODEL_INDEX[m]].provider)
        chat = self._chat()
        tenants_per = self.routes[chat].assign(p=prov[chat]).groupby("p")["tenant_id"].nunique()
        choice = tenants_per[tenants_per >= 2]
        provider = str(self.rng.choice(choice.index)) if len(choice) else str(tenants_per.idxmax())
        rows = np.flatnonzero((prov == provider).to_numpy() & chat)
        h0 = self._slot(3)
        h1 = h0 + 3
        before = self._cost()
        self.latency[rows, h0:h1] *= 3.0
        self.error_p[rows, h0:h1] = 0.25
        self.retry[rows, h0:h1] = 1.5
        models = sorted(set(self.routes["request_model"].iloc[rows]))
        cause = (
            ("provider_degradation", provider)
            if len(models) >= 2
            else ("model_degradation", models[0])
        )
        self.used.update(rows.tolist())
        self._add(
            "provider_outage",
            *cause,
            "*",
            h0,
            h1,
            self._members(
                rows, ["latency_p95_ms", "error_rate", "request_count", "cost_usd", "tokens"]
            ),
            [],
            self._excess(rows, h0, h1, before),
        )
        self.outage_hours = (h0, h1)
        self.outage_provider = provider

    def model_rollout(self) -> None:
        chat = self._chat()
        prov = self.routes["request_model"].map(lambda m: MODELS[MODEL_INDEX[m]].provider)
        ok = (
            chat
            & ~self.routes.index.isin(list(self.used))
            & (prov != self.outage_provider).to_numpy()
        )
        pick = int(self.rng.choice(np.flatnonzero(ok)))
        tenant, model = self.routes.loc[pick, "tenant_id"], self.routes.loc[pick, "request_model"]
        rows = self._rows(tenant_id=tenant, request_model=model)
        h0 = self._slot(4)
        h1 = h0 + 4
        at = self.hours[h0] + pd.Timedelta(minutes=int(self.rng.integers(0, 50)))
        before = self._cost()
        self.latency[rows, h0 + 1 : h1] *= 2.5
        self.latency[rows, h0] *= 1.0 + 1.5 * (60 - at.minute) / 60
        version = f"{MODELS[MODEL_INDEX[model]].snapshot}-r2"
        short = tenant.removeprefix("tenant-")
        eid = self._event(
            "registry",
            "asset_updated",
            at,
            tenant,
            f"model-{short}-{model}",
            asset_kind="model",
            name=model,
            version=version,
            model=model,
            provider=MODELS[MODEL_INDEX[model]].provider,
            change="model version rollout",
        )
        self.used.update(rows.tolist())
        self._add(
            "model_rollout",
            "model_version",
            f"{tenant}/{model}@{version}",
            tenant,
            h0,
            h1,
            self._members(rows, ["latency_p95_ms"]),
            [eid],
            self._excess(rows, h0, h1, before),
        )

    def _apps_in_use(self) -> np.ndarray:
        """Routes of an application one of whose routes an earlier scenario already uses.

        A scenario that acts on a whole application (a prompt change, a jailbreak, a harmless
        registry change) must not pick one of these: the two scenarios would then move the same
        series in the same hours, and neither ground truth could say which anomalies and which
        extra cost are its own (until
        2026-11-30 held-out seed 15's prompt change and jailbreak shared a route with its
        provider outage: 36% excess-cost error on the outage, 75% on the jailbreak).
        """
        used = self.routes.loc[sorted(self.used), ["tenant_id", "asset_id"]]
        pairs = set(zip(used["tenant_id"], used["asset_id"], strict=True))
        return np.array(
            [
                (t, a) in pairs
                for t, a in zip(self.routes["tenant_id"], self.routes["asset_id"], strict=True)
            ],
            dtype=bool,
        )

    def prompt_change(self) -> None:
        chat = self._chat()
        free = chat & ~self._apps_in_use()
        if not free.any():
            free = chat & ~self.routes.index.isin(list(self.used))
        apps = self.routes[free]
        pick = apps.sample(1, random_state=int(self.rng.integers(1 << 30))).iloc[0]
        rows = np.array(
            [
                i
                for i in self._rows(tenant_id=pick["tenant_id"], asset_id=pick["asset_id"])
                if chat[i]
            ]
        )
        h0 = self._slot(5)
        h1 = h0 + 5
        at = self.hours[h0] + pd.Timedelta(minutes=int(self.rng.integers(0, 30)))
        before = self._cost()
        frac = (60 - at.minute) / 60
        self.tin[rows, h0] *= 1 + 1.2 * frac
        self.tout[rows, h0] *= 1 + 0.6 * frac
        self.tin[rows, h0 + 1 : h1] *= 2.2
        self.tout[rows, h0 + 1 : h1] *= 1.6
        eid = self._event(
            "registry",
            "asset_updated",
            at,
            pick["tenant_id"],
            pick["asset_id"],
            asset_kind="application",
            name=pick["asset_id"],
            version="3",
            change="prompt template updated",
        )
        self.used.update(
            self._rows(tenant_id=pick["tenant_id"], asset_id=pick["asset_id"]).tolist()
        )
        self._add(
            "prompt_change",
            "prompt_version",
            f"{pick['tenant_id']}/{pick['asset_id']}@3",
            pick["tenant_id"],
            h0,
            h1,
            self._members(rows, ["tokens", "cost_usd"]),
            [eid],
            self._excess(rows, h0, h1, before),
        )

    def jailbreak(self) -> None:
        untouched = ~self._apps_in_use()
        if not untouched.any():
            untouched = ~self.routes.index.isin(list(self.used))
        free = self.routes[untouched]
        pick = free.sample(1, random_state=int(self.rng.integers(1 << 30))).iloc[0]
        rows = self._rows(tenant_id=pick["tenant_id"], asset_id=pick["asset_id"])
        h0 = self._slot(2)
        h1 = h0 + 2
        before = self._cost()
        self.retry[rows, h0:h1] = 1.6
        self.error_p[rows, h0:h1] = 0.2
        attacker = f"user-{int(self.rng.integers(1 << 40)):012x}"
        ids = []
        for h in range(h0, h1):
            for _ in range(int(self.rng.integers(40, 70))):
                at = self.hours[h] + pd.Timedelta(seconds=int(self.rng.integers(0, 3600)))
                ids.append(
                    self._event(
                        "security",
                        "threat_detected",
                        at,
                        pick["tenant_id"],
                        pick["asset_id"],
                        name=str(self.rng.choice(["jailbreak", "prompt_injection"], p=[0.7, 0.3])),
                        user_id=attacker if self.rng.random() < 0.8 else None,
                        severity="high",
                    )
                )
            for _ in range(int(self.rng.integers(8, 15))):
                at = self.hours[h] + pd.Timedelta(seconds=int(self.rng.integers(0, 3600)))
                ids.append(
                    self._event(
                        "policy",
                        "policy_violation",
                        at,
                        pick["tenant_id"],
                        pick["asset_id"],
                        name="pol-acceptable-use",
                        user_id=attacker,
                        severity="high",
                    )
                )
        self.used.update(rows.tolist())
        self._add(
            "jailbreak_campaign",
            "security_attack",
            f"{pick['tenant_id']}/{pick['asset_id']}",
            pick["tenant_id"],
            h0,
            h1,
            self._members(rows, ["request_count", "cost_usd", "tokens", "error_rate"]),
            ids,
            self._excess(rows, h0, h1, before),
        )

    def compliance(self) -> None:
        apps = self.routes.groupby("tenant_id")["asset_id"].nunique()
        tenant = str(apps.idxmax())
        assets = sorted(set(self.routes[self.routes["tenant_id"] == tenant]["asset_id"]))
        h0 = self._slot(4)
        h1 = h0 + 4
        at = self.hours[h0] + pd.Timedelta(minutes=int(self.rng.integers(0, 20)))
        policy = "pol-token-budget"
        eid = self._event(
            "registry",
            "asset_updated",
            at,
            tenant,
            f"policy-{policy}",
            asset_kind="policy",
            name=policy,
            version="2",
            change="limit lowered",
        )
        ids = [eid]
        for asset in assets:
            for h in range(h0, h1):
                for _ in range(int(self.rng.integers(6, 12))):
                    t = max(at, self.hours[h]) + pd.Timedelta(
                        seconds=int(self.rng.integers(0, 3000))
                    )
                    ids.append(
                        self._event(
                            "policy",
                            "policy_violation",
                            t,
                            tenant,
                            asset,
                            name=policy,
                            severity="medium",
                        )
                    )
        self._add(
            "compliance_cascade",
            "policy_change",
            f"{tenant}/{policy}@2",
            tenant,
            h0,
            h1,
            [],
            ids,
            0.0,
        )

    def unrelated(self, n: int = 2) -> None:
        h_out = self.outage_hours
        for _ in range(n):
            free = self.routes[~self.routes.index.isin(list(self.used)) & self._chat()]
            if free.empty:
                return
            pick = free.sample(1, random_state=int(self.rng.integers(1 << 30)))
            row = int(pick.index[0])
            h0 = int(self.rng.integers(max(len(self.hours) - 22, h_out[0] - 1), h_out[1]))
            h0 = min(h0, len(self.hours) - 3)
            h1 = h0 + 2
            before = self._cost()
            self.tin[row, h0:h1] *= 3.0
            self.tout[row, h0:h1] *= 3.0
            self.used.add(row)
            t, a, m = pick.iloc[0][["tenant_id", "asset_id", "request_model"]]
            self._add(
                "unrelated",
                "application_anomaly",
                f"{t}/{a}",
                t,
                h0,
                h1,
                [f"{t}/{a}/{m}/tokens", f"{t}/{a}/{m}/cost_usd"],
                [],
                self._excess(np.array([row]), h0, h1, before),
            )

    def expected_spike(self) -> None:
        free = self.routes[~self.routes.index.isin(list(self.used))]
        if free.empty:
            return
        row = int(free.sample(1, random_state=int(self.rng.integers(1 << 30))).index[0])
        h0 = self._slot(2)
        self.requests[row, h0 : h0 + 2] *= 2.5
        self.forecast_override += [(row, h0), (row, h0 + 1)]
        self.used.add(row)
        t, a, m = self.routes.loc[row, ["tenant_id", "asset_id", "request_model"]]
        self._add(
            "expected_spike",
            "none",
            "",
            t,
            h0,
            h0 + 2,
            [f"{t}/{a}/{m}/request_count"],
            [],
            0.0,
            expects=False,
        )

    def decoys(self, n: int = 2) -> None:
        # On an application of another scenario, a harmless change in its hours would be
        # indistinguishable from that scenario's cause (seen: a decoy prompt change in the hour
        # an unrelated token spike began on the same application).
        untouched = ~self._apps_in_use()
        if not untouched.any():
            untouched = ~self.routes.index.isin(list(self.used))
        free = self.routes[untouched].drop_duplicates(["tenant_id", "asset_id"])
        for _, r in free.head(n).iterrows():
            h = self._slot(1)
            at = self.hours[h] + pd.Timedelta(minutes=int(self.rng.integers(0, 59)))
            eid = self._event(
                "registry",
                "asset_updated",
                at,
                r["tenant_id"],
                r["asset_id"],
                asset_kind="application",
                name=r["asset_id"],
                version="2",
                change="prompt template updated",
            )
            self._add(
                "decoy_change", "none", "", r["tenant_id"], h, h + 1, [], [eid], 0.0, expects=False
            )

    # -- frames -------------------------------------------------------------------------------
    def background_events(self) -> None:
        lam_alerts = self.requests * self.retry * SECURITY_RATE
        alerts = self.rng.poisson(lam_alerts)
        violations = self.rng.poisson(self.requests * self.retry * VIOLATION_RATE)
        for (i, h), count in np.ndenumerate(alerts):
            t, a = self.routes.loc[i, "tenant_id"], self.routes.loc[i, "asset_id"]
            for _ in range(count):
                at = self.hours[h] + pd.Timedelta(seconds=int(self.rng.integers(0, 3600)))
                self._event(
                    "security",
                    "threat_detected",
                    at,
                    t,
                    a,
                    name=str(self.rng.choice(ALERT_TYPES)),
                    user_id=f"user-{int(self.rng.integers(1 << 20)):06x}",
                    severity="medium",
                )
            for _ in range(int(violations[i, h])):
                at = self.hours[h] + pd.Timedelta(seconds=int(self.rng.integers(0, 3600)))
                self._event(
                    "policy",
                    "policy_violation",
                    at,
                    t,
                    a,
                    name=str(self.rng.choice(POLICIES)),
                    severity="low",
                )

    def request_shape(self) -> pd.DataFrame:
        """Tokens of one successful request per route-hour, in the row order of ``frames``."""
        return pd.DataFrame({"input_tokens": self.tin.ravel(), "output_tokens": self.tout.ravel()})

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        requests = np.rint(self.requests * self.retry)
        errors = self.rng.binomial(requests.astype(np.int64), np.clip(self.error_p, 0, 1))
        ok = requests - errors
        tokens = ok * (self.tin + self.tout)
        cost = ok * (self.tin * self.p_in + self.tout * self.p_out)
        n_r, n_h = requests.shape
        keys = self.routes[["tenant_id", "asset_id", "request_model"]]
        series = pd.DataFrame(
            {
                "bucket_at": np.tile(self.hours, n_r),
                "tenant_id": np.repeat(keys["tenant_id"].to_numpy(), n_h),
                "asset_id": np.repeat(keys["asset_id"].to_numpy(), n_h),
                "request_model": np.repeat(keys["request_model"].to_numpy(), n_h),
                "request_count": requests.ravel(),
                "tokens": tokens.ravel(),
                "cost_usd": cost.ravel(),
                "error_rate": (errors / np.maximum(requests, 1)).ravel(),
                "latency_p95_ms": self.latency.ravel(),
            }
        )
        events = pd.DataFrame(self.events)
        for column in ("name", "version", "asset_kind", "model", "provider", "user_id", "change"):
            if column not in events:
                events[column] = None
        events["occurred_at"] = pd.to_datetime(events["occurred_at"], utc=True)
        events = events.sort_values("occurred_at", kind="stable").reset_index(drop=True)
        forecasts = request_forecasts(series, self.day0)
        for row, h in self.forecast_override:
            t, a, m = keys.iloc[row]
            hit = (
                (forecasts["tenant_id"] == t)
                & (forecasts["asset_id"] == a)
                & (forecasts["request_model"] == m)
                & (forecasts["target_at"] == self.hours[h])
            )
            observed = float(requests[row, h])
            forecasts.loc[hit, ["yhat", "yhat_lower", "yhat_upper"]] = [
                observed,
                observed * 0.8,
                observed * 1.2,
            ]
        return series, events, forecasts


def request_forecasts(series: pd.DataFrame, since: pd.Timestamp) -> pd.DataFrame:
    """Seasonal-naive request-count forecasts with a 95% interval for the hours from ``since``:
    median of the same hour on the previous days, +-1.96 robust sigma."""
    keys = ["tenant_id", "asset_id", "request_model"]
    history = series[series["bucket_at"] < since].assign(hod=lambda f: f["bucket_at"].dt.hour)
    med = history.groupby([*keys, "hod"])["request_count"].median().rename("yhat")
    dev = history.join(med, on=[*keys, "hod"]).assign(
        d=lambda f: (f["request_count"] - f["yhat"]).abs()
    )
    mad = dev.groupby(keys)["d"].median().rename("mad")
    target = series[series["bucket_at"] >= since][[*keys, "bucket_at"]].assign(
        hod=lambda f: f["bucket_at"].dt.hour
    )
    out = target.join(med, on=[*keys, "hod"]).join(mad, on=keys)
    sigma = 1.4826 * out["mad"]
    return pd.DataFrame(
        {
            **{k: out[k] for k in keys},
            "metric": "request_count",
            "target_at": out["bucket_at"],
            "yhat": out["yhat"],
            "yhat_lower": (out["yhat"] - 1.96 * sigma).clip(lower=0),
            "yhat_upper": out["yhat"] + 1.96 * sigma,
        }
    ).reset_index(drop=True)


def detect_anomalies(
    series: pd.DataFrame, since: pd.Timestamp, threshold: float = 8.0
) -> pd.DataFrame:
    """Seasonal robust z-score detector (a stand-in for the champion detector).

    Per series and metric, the expected value of an hour is the median of the same hour of day
    before ``since``; the scale is 1.4826 x the median absolute residual of that history
    (floored at 3% of the level). Hours from ``since`` with ``|z| >= threshold`` are flagged.
    Returns rows in the ``analytics.anomalies`` shape (every scored hour, ``is_anomaly`` set).
    """
    keys = ["tenant_id", "asset_id", "request_model"]
    long = series.melt(
        id_vars=[*keys, "bucket_at"], value_vars=METRICS, var_name="metric", value_name="observed"
    )
    long["hod"] = long["bucket_at"].dt.hour
    history = long[long["bucket_at"] < since]
    med = history.groupby([*keys, "metric", "hod"])["observed"].median().rename("expected")
    resid = history.join(med, on=[*keys, "metric", "hod"])
    scale = (
        (resid["observed"] - resid["expected"])
        .abs()
        .groupby([resid[k] for k in [*keys, "metric"]])
        .median()
        * 1.4826
    ).rename("scale")
    level = history.groupby([*keys, "metric"])["observed"].median().rename("level")
    scored = long[long["bucket_at"] >= since].join(med, on=[*keys, "metric", "hod"])
    scored = scored.join(scale, on=[*keys, "metric"]).join(level, on=[*keys, "metric"])
    floor = np.maximum(0.03 * scored["level"].abs(), 1e-9)
    sigma = np.maximum(scored["scale"], floor)
    deviation = (scored["observed"] - scored["expected"]) / sigma
    return pd.DataFrame(
        {
            "bucket_at": scored["bucket_at"],
            **{k: scored[k] for k in keys},
            "metric": scored["metric"],
            "observed": scored["observed"],
            "expected": scored["expected"],
            "deviation": deviation,
            "score": 1.0 - np.exp(-np.abs(deviation) / threshold),
            "is_anomaly": deviation.abs() >= threshold,
        }
    ).reset_index(drop=True)


def generate_scenarios(
    seed: int = 0,
    days: int = 8,
    end: datetime | None = None,
    requests_per_hour: float = REQUESTS_PER_HOUR,
) -> ScenarioData:
    """One world of ``days`` days whose last day carries every scenario (see the module doc).

    The same seed and ``end`` give identical frames. ``end`` defaults to 2026-11-28 00:00 UTC so
    evaluations are reproducible. ``requests_per_hour`` scales the traffic of the same world
    (the pipeline mode sends every request through Kafka, so it runs at a fraction of it).
    """
    end = end or datetime(2026, 11, 28, tzinfo=UTC)
    b = _Builder(seed, days, end, requests_per_hour)
    b.provider_outage()
    b.model_rollout()
    b.prompt_change()
    b.jailbreak()
    b.compliance()
    b.unrelated()
    b.expected_spike()
    b.decoys()
    b.background_events()
    series, events, forecasts = b.frames()
    return ScenarioData(
        seed=seed,
        start=b.hours[0],
        end=b.end,
        scenario_start=b.day0,
        series=series,
        events=events,
        forecasts=forecasts,
        providers=providers(),
        scenarios=b.scenarios,
        request_shape=b.request_shape(),
    )


#: Spread of one route-hour's successful request latencies (lognormal sigma): its 95th
#: percentile is the series' ``latency_p95_ms``.
LATENCY_SIGMA = 0.35
_Z95 = 1.6448536269514722
_SERVER_ERROR = ERROR_TYPES.index("500")
_CONTRACT_FAMILY = {"security": "security", "policy": "governance", "registry": "registry"}


def _telemetry_hour(data: ScenarioData, hour: int, n_hours: int) -> list[Message]:
    """One telemetry event per request of hour ``hour``: the counts, error rate, tokens, cost
    and latency p95 of each route-hour of ``data.series`` are what the mart will aggregate."""
    rows = np.arange(hour, len(data.series), n_hours)
    series = data.series.iloc[rows]
    shape = data.request_shape.iloc[rows] if data.request_shape is not None else None
    if shape is None:
        raise ValueError("the scenario data carry no request shape (generate_scenarios)")
    counts = series["request_count"].to_numpy().astype(np.int64)
    n = int(counts.sum())
    if n == 0:
        return []
    rng = np.random.default_rng([data.seed, 91, hour])
    route = np.repeat(np.arange(len(rows)), counts)
    errors = np.rint(series["error_rate"].to_numpy() * counts).astype(np.int64)
    # The first ``errors`` requests of each route-hour fail (their order in time is random).
    rank = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    failed = rank < errors[route]
    model_idx = np.array([MODEL_INDEX[m] for m in series["request_model"]])[route]
    tin = shape["input_tokens"].to_numpy()[route]
    tout = shape["output_tokens"].to_numpy()[route]
    tokens_in = np.floor(tin + rng.random(n)).astype(np.int64)
    tokens_out = np.floor(tout + rng.random(n)).astype(np.int64)
    tokens_in[failed] = 0
    tokens_out[failed] = 0
    p95 = series["latency_p95_ms"].to_numpy()[route]
    latency = np.where(
        failed,
        rng.lognormal(np.log(800.0), 0.7, n),
        np.exp(np.log(p95) - _Z95 * LATENCY_SIGMA + LATENCY_SIGMA * rng.standard_normal(n)),
    )
    start_ms = int(series["bucket_at"].iloc[0].value // 1_000_000)
    batch = TelemetryBatch(
        timestamp_ms=start_ms + rng.integers(0, 3_600_000, n),
        event_ids=uuid4_strings(rng, n),
        tenant_ids=series["tenant_id"].to_numpy(dtype=object)[route].tolist(),
        asset_ids=series["asset_id"].to_numpy(dtype=object)[route].tolist(),
        model_idx=model_idx,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        latency_ms=latency,
        ttft_ms=np.full(n, -1.0),
        cost_usd=request_cost(model_idx, tokens_in, tokens_out),
        status_code=np.where(failed, 500, 200),
        error_type=np.where(failed, _SERVER_ERROR, -1),
    )
    return encode_telemetry(batch)


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and value != ""


def _event_body(event: dict[str, Any]) -> dict[str, Any]:
    extra = {"user_id": event["user_id"]} if _given(event.get("user_id")) else {}
    if event["family"] == "security":
        return {"alert_type": event["name"], "detector": "scenario", **extra}
    if event["family"] == "policy":
        return {"policy_id": event["name"], "violation_type": "policy_violation", **extra}
    body = {"asset_kind": event["asset_kind"], "name": event["name"], "version": event["version"]}
    for column in ("provider", "model", "change"):
        if _given(event.get(column)):
            body[column] = event[column]
    return body


def event_messages(events: pd.DataFrame) -> list[Message]:
    """The registry changes, security alerts and policy violations of ``events`` as contract
    messages, with their ids (the ground truth names them).

    A change to a policy (``asset_kind`` ``policy``) is the compliance cascade's cause: a
    registry event like a model or prompt change.
    """
    out = []
    for event in events.to_dict("records"):
        spec = BY_FAMILY[_CONTRACT_FAMILY[event["family"]]]
        at = pd.Timestamp(event["occurred_at"])
        envelope = {
            "event_id": event["event_id"],
            "event_type": event["event_type"],
            "source_module": spec.source_module,
            "occurred_at": at.isoformat(),
            "tenant_id": event["tenant_id"],
            "asset_id": event["asset_id"],
            "severity": event["severity"],
            "schema_version": SCHEMA_VERSION,
            "body": _event_body(event),
        }
        out.append(event_message(spec.topic, envelope, int(at.value // 1_000_000)))
    return out


def scenario_messages(data: ScenarioData) -> Iterator[Message]:
    """Every Kafka message of the scenario world, one hour of event time at a time: one
    ``llm.telemetry`` event per request of ``data.series`` and the events of ``data.events``.

    Aggregated per hour as ``fct_llm_requests_hourly`` does, the requests give back the series
    (counts and error rates exactly, tokens and cost up to rounding, latency p95 up to the
    sampling of ``LATENCY_SIGMA``-spread latencies).
    """
    hours = pd.DatetimeIndex(data.series["bucket_at"].drop_duplicates().sort_values())
    hour_of_event = data.events["occurred_at"].dt.floor("h")
    for i, start in enumerate(hours):
        yield from _telemetry_hour(data, i, len(hours))
        yield from event_messages(data.events[hour_of_event == start])
    yield from event_messages(data.events[hour_of_event > hours[-1]])
