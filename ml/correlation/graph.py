"""Anomaly correlation over the entity graph tenant -> application -> model -> provider.

One provider degrading shows as anomalies in many tenants' series; walking the graph up from
each anomalous series to its model and provider nodes finds the one node that explains them, so
they become one incident instead of one per series. Series that no shared node explains are
grouped per application (connected components of the anomalies that share an application node
within one co-occurrence episode).
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd

from ml.correlation.model import ALL_TENANTS, Cause, Scope, factorize_rows
from ml.correlation.temporal import co_occurrence_labels

#: An upstream node (model or provider) is blamed when its anomalous series span this many
#: tenants in one episode, in a latency/error family (what a provider can break).
MIN_TENANTS_UPSTREAM = 2
UPSTREAM_FAMILIES = frozenset({"latency", "errors"})


def entity_graph(series_keys: pd.DataFrame, providers: dict[str, str]) -> nx.DiGraph:
    """Directed graph provider -> model -> application -> tenant of the given series.

    Node names are ``provider:<p>``, ``model:<m>``, ``app:<tenant>/<asset>``, ``tenant:<t>``;
    an edge points from what is depended on to what depends on it.
    """
    graph = nx.DiGraph()
    for tenant, asset, model in series_keys[["tenant_id", "asset_id", "request_model"]].itertuples(
        index=False
    ):
        app = f"app:{tenant}/{asset}"
        provider = providers.get(model, "unknown")
        graph.add_edge(f"provider:{provider}", f"model:{model}")
        graph.add_edge(f"model:{model}", app)
        graph.add_edge(app, f"tenant:{tenant}")
    return graph


def upstream_causes(
    anomalies: pd.DataFrame, providers: dict[str, str], horizon: pd.Timedelta
) -> list[Cause]:
    """Provider/model degradations: one upstream node explains anomalies of several tenants.

    Within each co-occurrence episode of latency/error anomalies, the provider nodes whose
    anomalous descendants span ``MIN_TENANTS_UPSTREAM`` tenants become a cause; its entity is the
    provider when two or more of its models are hit, else the one model. Confidence grows with
    the number of tenants and applications it explains.
    """
    hit = anomalies[anomalies["family"].isin(UPSTREAM_FAMILIES)]
    if hit.empty:
        return []
    graph = entity_graph(hit.drop_duplicates(["tenant_id", "asset_id", "request_model"]), providers)
    causes = []
    labels = co_occurrence_labels(hit["bucket_at"])
    app_node = ("app:" + hit["tenant_id"] + "/" + hit["asset_id"]).to_numpy()
    model_node = ("model:" + hit["request_model"]).to_numpy()
    # What lies below each provider does not depend on the episode: one graph walk each.
    under = {
        provider: np.isin(app_node, list(below)) & np.isin(model_node, list(below))
        for provider in [n for n in graph if n.startswith("provider:")]
        for below in [nx.descendants(graph, provider)]
    }
    for label in np.unique(labels):
        in_episode = labels == label
        for provider, below_mask in under.items():
            selected = in_episode & below_mask
            if not selected.any():
                continue
            touched = hit[selected]
            tenants = set(touched["tenant_id"])
            if len(tenants) < MIN_TENANTS_UPSTREAM:
                continue
            models = sorted(set(touched["request_model"]))
            name = provider.removeprefix("provider:")
            entity = name if len(models) >= 2 else models[0]
            n_apps = len(set(zip(touched["tenant_id"], touched["asset_id"], strict=True)))
            confidence = float(min(0.95, 0.5 + 0.1 * len(tenants) + 0.05 * n_apps))
            causes.append(
                Cause(
                    cause_type="provider_degradation" if len(models) >= 2 else "model_degradation",
                    entity=entity,
                    tenant_id=ALL_TENANTS,
                    start=touched["bucket_at"].min() - pd.Timedelta(hours=1),
                    end=touched["bucket_at"].max() + horizon,
                    # The touched series only: their volume/spend anomalies are the retries'
                    # cost; another application's spend spike on the same model is not.
                    scope=Scope(
                        tenants=frozenset(tenants),
                        assets=frozenset(touched["asset_id"]),
                        models=frozenset(models),
                    ),
                    confidence=confidence,
                    rule="graph",
                    evidence=f"{len(touched)} latency/error anomalies on {', '.join(models)} "
                    f"across {len(tenants)} tenants and {n_apps} applications",
                )
            )
    return causes


def local_groups(anomalies: pd.DataFrame) -> np.ndarray:
    """Group label per anomaly: connected components of anomalies sharing an application node
    within one co-occurrence episode (the fallback grouping when no cause explains them).

    Each anomaly links to exactly one node (its application in its episode), so the components
    are the distinct (tenant, application, episode) triples, labelled in order of first row as a
    graph traversal would find them: a factorization, no graph needed."""
    if anomalies.empty:
        return np.zeros(0, dtype=np.int64)
    episodes = co_occurrence_labels(anomalies["bucket_at"])
    keys = pd.DataFrame(
        {
            "tenant_id": anomalies["tenant_id"].to_numpy(),
            "asset_id": anomalies["asset_id"].to_numpy(),
            "episode": episodes,
        }
    )
    labels, _ = factorize_rows(keys, ["tenant_id", "asset_id", "episode"])
    return labels
