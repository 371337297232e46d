"""The promotion rule: beat the baseline and the champion, strictly."""

import math

import pytest

from ml.registry import should_promote


@pytest.mark.parametrize(
    ("candidate", "champion", "baseline", "promote"),
    [
        (0.8, None, 1.0, True),
        (0.8, 0.9, 1.0, True),
        (0.95, 0.9, 1.0, False),
        (1.1, None, 1.0, False),
        (0.8, 0.7, 1.0, False),
        # A tie with the champion must not churn the alias.
        (0.9, 0.9, 1.0, False),
        # A tie with the baseline is no improvement over the trivial model.
        (1.0, None, 1.0, False),
    ],
)
def test_lower_is_better(
    candidate: float, champion: float | None, baseline: float, promote: bool
) -> None:
    decision = should_promote(
        {"mase": candidate},
        None if champion is None else {"mase": champion},
        {"mase": baseline},
        "mase",
    )
    assert decision.promote is promote
    assert decision.reason


@pytest.mark.parametrize(
    ("candidate", "champion", "baseline", "promote"),
    [(0.9, 0.8, 0.7, True), (0.75, 0.8, 0.7, False), (0.6, None, 0.7, False)],
)
def test_higher_is_better(
    candidate: float, champion: float | None, baseline: float, promote: bool
) -> None:
    decision = should_promote(
        {"f1": candidate},
        None if champion is None else {"f1": champion},
        {"f1": baseline},
        "f1",
        lower_is_better=False,
    )
    assert decision.promote is promote


@pytest.mark.parametrize("bad", [math.nan, math.inf, None])
def test_candidate_without_a_finite_metric_is_never_promoted(bad: float | None) -> None:
    candidate = {} if bad is None else {"mase": bad}
    assert not should_promote(candidate, None, {"mase": 1.0}, "mase").promote


def test_missing_baseline_refuses() -> None:
    assert not should_promote({"mase": 0.5}, None, {}, "mase").promote


def test_champion_without_metric_is_beatable() -> None:
    assert should_promote({"mase": 0.5}, {"smape": 3.0}, {"mase": 1.0}, "mase").promote
