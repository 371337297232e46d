"""The model promotion rule: when a newly trained candidate replaces the ``champion``.

Pure: metrics in, a decision out. The asset reads the metrics from MLflow and moves the alias.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionDecision:
    """Whether to promote, and why (shown in Dagit and logged to MLflow)."""

    promote: bool
    reason: str


def _beats(candidate: float, other: float, lower_is_better: bool) -> bool:
    return candidate < other if lower_is_better else candidate > other


def should_promote(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    baseline: Mapping[str, float],
    metric: str,
    lower_is_better: bool = True,
) -> PromotionDecision:
    """Promote only a candidate strictly better than the baseline AND the current champion.

    A tie never promotes: moving the alias to an equally good model churns the published
    version for nothing. A missing or non-finite candidate or baseline metric refuses promotion
    (an evaluation that produced no number must not publish a model); a champion without a
    finite metric (e.g. logged by an older evaluation) is treated as beatable.

    Args:
        candidate: the candidate's evaluation metrics.
        champion: the current champion's metrics, ``None`` when there is no champion yet.
        baseline: the baseline's metrics on the same evaluation (seasonal naive, robust
            baseline), computed in the candidate's run.
        metric: the metric deciding promotion.
        lower_is_better: ``True`` for errors (MASE, sMAPE), ``False`` for scores (F1, recall).
    """
    value = candidate.get(metric)
    if value is None or not math.isfinite(value):
        return PromotionDecision(False, f"candidate has no finite {metric}")
    floor = baseline.get(metric)
    if floor is None or not math.isfinite(floor):
        return PromotionDecision(False, f"baseline has no finite {metric}")
    if not _beats(value, floor, lower_is_better):
        return PromotionDecision(
            False, f"candidate {metric}={value:.4g} does not beat the baseline's {floor:.4g}"
        )
    if champion is None:
        return PromotionDecision(
            True, f"no champion yet; candidate {metric}={value:.4g} beats baseline {floor:.4g}"
        )
    best = champion.get(metric)
    if best is None or not math.isfinite(best):
        return PromotionDecision(True, f"champion has no finite {metric}; candidate {value:.4g}")
    if not _beats(value, best, lower_is_better):
        return PromotionDecision(
            False, f"candidate {metric}={value:.4g} does not beat the champion's {best:.4g}"
        )
    return PromotionDecision(
        True,
        f"candidate {metric}={value:.4g} beats champion {best:.4g} and baseline {floor:.4g}",
    )
