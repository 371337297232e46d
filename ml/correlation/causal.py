"""Causal chains: a registry change followed by a change point in the series it touches.

For each change in the registry (a model's version, an application's prompt, a provider or
model swap) the series it touches are tested for a level shift at the change: Welch's t-test of
the hours after the change against the day before, on per-request metrics (latency p95, error
rate, tokens and cost per request), which the daily traffic cycle does not move; a shift the
first hour after the change does not show yet is discounted (``onset_share``). The cause's
confidence is the strongest series-metric evidence, ``(1 - p) * min(1, effect / 4)`` with
``effect`` the shift in pre-change standard deviations (floored at 2% of the level, so a flat
series does not turn noise into certainty). A change nothing moved after gets a low confidence
and loses to the other rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ml.correlation.model import SERIES_KEY, Cause, Scope, factorize_rows
from ml.correlation.temporal import naive_ns

PRE_WINDOW = pd.Timedelta(hours=24)
POST_WINDOW = pd.Timedelta(hours=6)
#: How long after a change its anomalies are still blamed on it.
HORIZON = pd.Timedelta(hours=12)
TESTED_METRICS = ("latency_p95_ms", "error_rate", "tokens_per_request", "cost_per_request")
MIN_CONFIDENCE = 0.5
#: Share of the mean post-change shift the first hour after a change must show (``onset_share``).
ONSET_SHARE = 0.5
_KIND = {"model": "model_version", "prompt": "prompt_version", "application": "prompt_version"}


def change_type(asset_kind: str | None, change: str | None) -> str | None:
    """The cause type of a registry change, or None for changes this rule does not handle."""
    text = (change or "").lower()
    if asset_kind == "application" and ("provider" in text or "model swap" in text):
        return "provider_swap"
    return _KIND.get(asset_kind or "")


def _scope(event: pd.Series) -> Scope:
    tenant = frozenset({event["tenant_id"]})
    if event["asset_kind"] == "model":
        return Scope(tenants=tenant, models=frozenset({event["model"]}))
    return Scope(tenants=tenant, assets=frozenset({event["asset_id"]}))


def with_intensive_metrics(series: pd.DataFrame) -> pd.DataFrame:
    """``series`` plus tokens and cost per request (NaN for hours without requests)."""
    count = series["request_count"].where(series["request_count"] > 0)
    return series.assign(
        tokens_per_request=series["tokens"] / count, cost_per_request=series["cost_usd"] / count
    )


@dataclass
class Panel:
    """Hourly per-request metrics as an array (series x hour x metric, NaN where missing), built
    once per pass so each change is tested with numpy slices instead of frame filters."""

    keys: pd.DataFrame
    hours: np.ndarray
    values: np.ndarray

    @staticmethod
    def build(prepared: pd.DataFrame) -> Panel:
        code, first = factorize_rows(prepared, SERIES_KEY)
        stamps = naive_ns(prepared["bucket_at"])
        hours = np.unique(stamps)
        values = np.full((len(first), len(hours), len(TESTED_METRICS)), np.nan)
        values[code, np.searchsorted(hours, stamps), :] = prepared[list(TESTED_METRICS)].to_numpy(
            dtype=float
        )
        keys = prepared[SERIES_KEY].iloc[first].reset_index(drop=True).assign(family="")
        return Panel(keys, hours, values)


def _shift_stats(
    values: np.ndarray, pre: np.ndarray, post: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Confidence, ratio, p-value and effect per (series, metric) of a level shift."""
    a, b = values[:, pre, :], values[:, post, :]
    n1, n2 = np.sum(~np.isnan(a), axis=1), np.sum(~np.isnan(b), axis=1)
    with np.errstate(all="ignore"):
        m1, m2 = np.nanmean(a, axis=1), np.nanmean(b, axis=1)
        v1 = np.nan_to_num(np.nanvar(a, axis=1, ddof=1))
        v2 = np.nan_to_num(np.nanvar(b, axis=1, ddof=1))
        se2 = v1 / np.maximum(n1, 1) + v2 / np.maximum(n2, 1)
        se2 = np.maximum(se2, (0.01 * np.abs(m1)) ** 2 + 1e-18)
        t = np.abs(m2 - m1) / np.sqrt(se2)
        p = 2 * stats.t.sf(t, np.maximum(n1 + n2 - 2, 1))
        spread = np.maximum(np.sqrt(v1), 0.02 * np.abs(m1)) + 1e-12
        effect = np.abs(m2 - m1) / spread
        ok = (n1 >= 3) & (n2 >= 2)
        conf = np.nan_to_num(np.where(ok, (1 - p) * np.minimum(1.0, effect / 4.0), 0.0))
        ratio = np.where(m1 != 0, m2 / m1, np.inf)
    return conf, ratio, p, effect


def onset_share(values: np.ndarray, pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    """Per (series, metric), how much of the post-change shift the first hour after the change
    already shows, as a factor in [0, 1] (1 from ``ONSET_SHARE`` of the mean shift up).

    A change acts from the first hour after it; a shift that only begins hours later (a provider
    outage two hours after a harmless prompt change on one of its applications) is not its
    doing. Until 2026-11-30 such a change took the outage's anomalies on that application
    (held-out seed 12: $27.8 of the outage's $28.1 went to a harmless prompt change).
    """
    with np.errstate(all="ignore"):
        m1 = np.nanmean(values[:, pre, :], axis=1)
        m2 = np.nanmean(values[:, post, :], axis=1)
        first = values[:, post[0], :]
        share = (first - m1) / (m2 - m1)
    return np.nan_to_num(np.clip(share / ONSET_SHARE, 0.0, 1.0), nan=1.0)


def change_point_confidence(panel: Panel, scope: Scope, at: pd.Timestamp) -> tuple[float, str]:
    """Level-shift evidence at ``at`` in the scope's series, net of the same shift elsewhere.

    The control series (pooled) are those outside the scope calling the same models: when they
    shift the same way at the same hour (a provider outage that happens to follow a deploy), the
    change did not cause it. The confidence is ``shift(scope) * (1 - shift(control) * share)``,
    ``share`` = the control's relative move in the same metric as a fraction of the scope's
    (clipped to [0, 1]), so a control that barely moves does not discount a real shift.

    Returns the confidence in [0, 1] and a one-line description of the strongest shift.
    """
    hour = np.datetime64(at.floor("h").tz_convert(None), "ns")
    pre = np.flatnonzero((panel.hours >= hour - PRE_WINDOW.to_timedelta64()) & (panel.hours < hour))
    post = np.flatnonzero(
        (panel.hours > hour) & (panel.hours <= hour + POST_WINDOW.to_timedelta64())
    )
    inside = scope.mask(panel.keys)
    if not inside.any() or not len(pre) or not len(post):
        return 0.0, "no series around the change"
    conf, ratio, p, effect = _shift_stats(panel.values[inside], pre, post)
    conf = conf * onset_share(panel.values[inside], pre, post)
    i, j = np.unravel_index(int(np.argmax(conf)), conf.shape)
    confidence = float(conf[i, j])
    if confidence <= 0:
        return 0.0, "no shift"
    key = panel.keys[inside].iloc[i]
    metric = TESTED_METRICS[j]
    text = (
        f"{metric} x{ratio[i, j]:.2f} on {key['tenant_id']}/{key['asset_id']}/"
        f"{key['request_model']} (p={p[i, j]:.1g}, {effect[i, j]:.1f} sd)"
    )
    models = set(panel.keys.loc[inside, "request_model"])
    control = ~inside & panel.keys["request_model"].isin(models).to_numpy()
    if control.any():
        # One pooled control series: the max over many control series would find a "shift" in
        # noise alone (multiple comparisons).
        with np.errstate(all="ignore"):
            pooled = np.nanmean(panel.values[control][:, :, j : j + 1], axis=0)[None, :, :]
        shared_conf, control_ratio, _, _ = _shift_stats(pooled, pre, post)
        shared, c_ratio = float(shared_conf[0, 0]), float(control_ratio[0, 0])
        share = 0.0
        if abs(ratio[i, j] - 1.0) > 1e-9 and np.isfinite(c_ratio):
            share = float(np.clip((c_ratio - 1.0) / (ratio[i, j] - 1.0), 0.0, 1.0))
        if shared * share > 0.5:
            text += f"; the same models shifted outside the change too (x{c_ratio:.2f})"
        confidence *= 1.0 - shared * share
    return confidence, text


def registry_causes(events: pd.DataFrame, series: pd.DataFrame | None) -> list[Cause]:
    """Causes from registry changes whose series shift at the change.

    Args:
        events: the events frame; rows of family ``registry`` other than registrations are
            considered, with an optional ``change`` column describing the change.
        series: hourly series (see ``ml.correlation.model``); without it no change point can be
            tested and changes are proposed at confidence 0.3 (below the local fallback).
    """
    changes = events[
        (events["family"] == "registry") & (events["event_type"] != "asset_registered")
    ]
    causes = []
    panel = None
    if series is not None and not series.empty and len(changes):
        panel = Panel.build(with_intensive_metrics(series))
    for _, event in changes.iterrows():
        kind = change_type(event.get("asset_kind"), event.get("change"))
        if kind is None:
            continue
        scope = _scope(event)
        at = pd.Timestamp(event["occurred_at"])
        if panel is not None:
            confidence, evidence = change_point_confidence(panel, scope, at)
        else:
            confidence, evidence = 0.3, "no series to test"
        entity = (
            f"{event['tenant_id']}/{event['model']}@{event['version']}"
            if event["asset_kind"] == "model"
            else f"{event['tenant_id']}/{event['asset_id']}@{event['version']}"
        )
        causes.append(
            Cause(
                cause_type=kind,
                entity=entity,
                tenant_id=str(event["tenant_id"]),
                start=at.floor("h"),
                end=at + HORIZON,
                scope=scope,
                confidence=round(confidence, 4),
                rule="causal",
                evidence=f"{event['event_type']} {event['asset_id']} v{event['version']} at "
                f"{at:%Y-%m-%d %H:%M}Z; {evidence}",
                event_ids=(str(event["event_id"]),),
            )
        )
    return causes
