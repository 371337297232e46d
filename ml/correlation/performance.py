"""Performance degradation chains: latency -> errors/429 -> retry-driven cost, ordered in time.

A slow provider first shows in latency, then in timeouts and 429s, and retries then raise
request counts and spend. The chain of an incident is its latency, error and volume/spend
families ordered by their first anomalous hour; it is a degradation chain when latency or errors
come first and at least two families take part, in that order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.correlation.temporal import naive_ns

ORDER = ("latency", "errors", "volume", "spend")


def degradation_chain(anomalies: pd.DataFrame) -> tuple[tuple[str, ...], bool]:
    """The families of ``anomalies`` (with ``family`` and ``bucket_at``) in order of first hour,
    and whether they form a latency -> errors -> cost chain (ties ordered as ``ORDER``)."""
    if anomalies.empty:
        return (), False
    return chain_of(anomalies["family"].to_numpy(), naive_ns(anomalies["bucket_at"]))


def chain_of(families: np.ndarray, hours: np.ndarray) -> tuple[tuple[str, ...], bool]:
    """``degradation_chain`` over arrays: each anomaly's family and hour (comparable values)."""
    if not len(families):
        return (), False
    first = {f: hours[families == f].min() for f in ORDER if (families == f).any()}
    chain = tuple(sorted(first, key=lambda f: (first[f], ORDER.index(f))))
    ranks = [ORDER.index(f) for f in chain]
    is_chain = len(chain) >= 2 and chain[0] in ("latency", "errors") and ranks == sorted(ranks)
    return chain, is_chain
