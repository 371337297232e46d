"""Security incident correlation: a burst of alerts on one application, with its violations and
the request anomalies it explains.

Alerts are counted per application and hour on the full hourly grid of the frame. An hour is a
burst hour when its count is at least ``MIN_ALERTS``, four times the application's median hourly
count (floored at 0.5) and 4 Poisson standard deviations above it. Consecutive burst hours of one
application (gaps of one hour allowed) are one campaign: its alerts, the policy violations of the
same application in those hours and its request anomalies (volume, spend, errors: attack traffic
and refusals) are one incident.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.correlation.model import Cause, Scope, factorize_rows
from ml.correlation.temporal import naive_ns

MIN_ALERTS = 12
RATIO = 4.0
MIN_Z = 5.0


def security_causes(events: pd.DataFrame) -> list[Cause]:
    """One cause per alert burst of an application (see the module docstring)."""
    alerts = events[events["family"] == "security"]
    if alerts.empty:
        return []
    hour = alerts["occurred_at"].dt.floor("h")
    counts = alerts.assign(hour=hour).groupby(["tenant_id", "asset_id", "hour"]).size()
    grid = counts.unstack("hour", fill_value=0)
    full = pd.date_range(grid.columns.min(), grid.columns.max(), freq="h")
    grid = grid.reindex(columns=full, fill_value=0)
    values = grid.to_numpy(dtype=float)
    base = np.maximum(np.median(values, axis=1, keepdims=True), 0.5)
    z = (values - base) / np.sqrt(base)
    burst = (values >= MIN_ALERTS) & (values >= RATIO * base) & (z >= MIN_Z)
    causes = []
    violations = events[events["family"] == "policy"]
    bursting = np.flatnonzero(burst.any(axis=1))
    if not len(bursting):
        return []
    # Applications as integer codes and hours as naive ns, shared by alerts and violations, so
    # each burst selects its events with integer comparisons instead of string ones.
    apps = pd.concat(
        [alerts[["tenant_id", "asset_id"]], violations[["tenant_id", "asset_id"]]],
        ignore_index=True,
    )
    app_code, first_row = factorize_rows(apps, ["tenant_id", "asset_id"])
    code_of = {
        (t, a): app_code[i]
        for i, t, a in zip(
            first_row,
            apps["tenant_id"].iloc[first_row],
            apps["asset_id"].iloc[first_row],
            strict=True,
        )
    }
    a_code, v_code = app_code[: len(alerts)], app_code[len(alerts) :]
    a_hour = naive_ns(hour)
    v_hour = naive_ns(violations["occurred_at"].dt.floor("h"))
    for row in bursting:
        tenant, asset = grid.index[row]
        code = code_of.get((tenant, asset), -1)
        hours = np.flatnonzero(burst[row])
        runs = np.split(hours, np.flatnonzero(np.diff(hours) > 2) + 1)
        for run in runs:
            first, last = full[run[0]], full[run[-1]]
            lo, hi = naive_ns(pd.Series([first, last]))
            hit = alerts[(a_code == code) & (a_hour >= lo) & (a_hour <= hi)]
            v_hit = violations[(v_code == code) & (v_hour >= lo) & (v_hour <= hi)]
            peak = float(values[row, run].max())
            ratio = peak / float(base[row, 0])
            kinds = hit["name"].value_counts()
            users = hit["user_id"].dropna().value_counts()
            who = ""
            if len(users) and users.iloc[0] >= 0.5 * len(hit):
                who = f", {users.iloc[0]} from {users.index[0]}"
            confidence = float(min(0.95, 0.6 + 0.08 * np.log2(max(ratio, 1.0))))
            causes.append(
                Cause(
                    cause_type="security_attack",
                    entity=f"{tenant}/{asset}",
                    tenant_id=str(tenant),
                    start=first - pd.Timedelta(hours=1),
                    end=last + pd.Timedelta(hours=2),
                    scope=Scope(tenants=frozenset({tenant}), assets=frozenset({asset})),
                    confidence=round(confidence, 4),
                    rule="security",
                    evidence=f"{len(hit)} security alerts ({kinds.index[0]} x{kinds.iloc[0]}"
                    f"{who}), peak {peak:.0f}/h vs {float(base[row, 0]):.1f}/h usual, "
                    f"{len(v_hit)} policy violations",
                    event_ids=tuple(hit["event_id"].astype(str))
                    + tuple(v_hit["event_id"].astype(str)),
                )
            )
    return causes
