"""Compliance cascades: one policy change followed by violations across many applications.

A registry event on an asset of kind ``policy`` (name = the policy id) is a policy change. Its
cascade is the set of the tenant's applications whose violations of that policy in the
``HORIZON`` after the change run at least ``RATIO`` times their rate of the day before (and at
least ``MIN_VIOLATIONS``). ``MIN_APPLICATIONS`` such applications make a cause; its members are
the change and those violations.
"""

from __future__ import annotations

import pandas as pd

from ml.correlation.model import Cause, Scope

HORIZON = pd.Timedelta(hours=12)
PRE_WINDOW = pd.Timedelta(hours=24)
RATIO = 3.0
MIN_VIOLATIONS = 3
MIN_APPLICATIONS = 2


def compliance_causes(events: pd.DataFrame) -> list[Cause]:
    """One cause per policy change that cascades (see the module docstring)."""
    changes = events[
        (events["family"] == "registry")
        & (events["asset_kind"] == "policy")
        & (events["event_type"] != "asset_registered")
    ]
    violations = events[events["family"] == "policy"]
    causes = []
    for _, change in changes.iterrows():
        at = pd.Timestamp(change["occurred_at"])
        policy = str(change["name"])
        mine = violations[
            (violations["tenant_id"] == change["tenant_id"]) & (violations["name"] == policy)
        ]
        pre = mine[(mine["occurred_at"] >= at - PRE_WINDOW) & (mine["occurred_at"] < at)]
        post = mine[(mine["occurred_at"] >= at) & (mine["occurred_at"] < at + HORIZON)]
        if post.empty:
            continue
        pre_rate = pre.groupby("asset_id").size() / (PRE_WINDOW / pd.Timedelta(hours=1))
        post_span = max(1.0, (post["occurred_at"].max() - at) / pd.Timedelta(hours=1))
        post_count = post.groupby("asset_id").size()
        post_rate = post_count / post_span
        ratio = post_rate / pre_rate.reindex(post_rate.index).fillna(0.0).clip(lower=1.0 / 24)
        cascading = ratio[(ratio >= RATIO) & (post_count >= MIN_VIOLATIONS)].index
        if len(cascading) < MIN_APPLICATIONS:
            continue
        members = post[post["asset_id"].isin(cascading)]
        confidence = min(0.95, 0.55 + 0.1 * len(cascading))
        causes.append(
            Cause(
                cause_type="policy_change",
                entity=f"{change['tenant_id']}/{policy}@{change['version']}",
                tenant_id=str(change["tenant_id"]),
                start=at.floor("h"),
                end=at + HORIZON,
                scope=Scope(
                    tenants=frozenset({change["tenant_id"]}),
                    assets=frozenset(cascading),
                    families=frozenset({"errors", "volume"}),
                ),
                confidence=round(confidence, 4),
                rule="compliance",
                evidence=f"policy {policy} v{change['version']} changed at {at:%H:%M}Z, then "
                f"{len(members)} violations across {len(cascading)} applications "
                f"(x{float(ratio[cascading].median()):.1f} their usual rate)",
                event_ids=(str(change["event_id"]), *members["event_id"].astype(str)),
            )
        )
    return causes
