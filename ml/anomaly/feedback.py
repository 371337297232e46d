"""Analyst feedback into the next training: per-series thresholds raised above marked false alarms.

An analyst marks an alert in ``analytics.anomaly_feedback`` as a false positive. Scoring already
unflags that very hour; the next training goes further and raises the series' alert threshold
just above the highest score an analyst called false, so alerts of that size on that series stop
-- without touching the other series. The threshold is capped (``ceiling``): a value outside
anything the series has shown scores 1 and still alerts, however often similar alerts were
dismissed. The training asset measures the trade-off on its held-out evaluation (alerts on clean
hours and recall on injected spikes, with and without the tuned thresholds).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping


def tune_thresholds(
    false_positive_scores: Mapping[Hashable, Iterable[float]],
    base: float,
    *,
    margin: float = 0.02,
    ceiling: float = 0.9,
) -> dict[Hashable, float]:
    """Per series with false positives, the threshold that would have kept them quiet.

    Args:
        false_positive_scores: per series, the scores of the alerts marked false positive.
        base: the configuration's threshold (a tuned threshold is never below it).
        margin: how far above the highest false-positive score the new threshold sits.
        ceiling: the highest threshold feedback may set.

    Returns:
        ``{series: threshold}`` for the series whose threshold changes.
    """
    if not 0 < base <= ceiling <= 1:
        raise ValueError("need 0 < base <= ceiling <= 1")
    tuned: dict[Hashable, float] = {}
    for key, scores in false_positive_scores.items():
        values = [float(s) for s in scores]
        if not values:
            continue
        threshold = min(ceiling, max(base, max(values) + margin))
        if threshold > base:
            tuned[key] = threshold
    return tuned
