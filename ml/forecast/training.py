"""Training the request-rate forecaster: candidate configurations backtested on the same series.

Each candidate (the seasonal naive, the configured median ensemble, the current champion's
configuration) is backtested from the same rolling origins of the same series; the gate metric
(MASE by default, lower is better) is the mean over series, and the same mean over seeded
bootstrap resamples of the series measures the evaluation's noise for ``ml.promotion``. The
forecasters fit in the call, so the registered model is the winner's configuration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml.forecast.backtest import BacktestResult, rolling_origin_backtest
from ml.forecast.base import Forecaster
from ml.forecast.ensemble import Ensemble
from ml.forecast.fallback import Fallback
from ml.forecast.naive import AdaptiveSeasonalNaive, SeasonalNaive
from ml.forecast.prophet_model import ProphetForecaster
from ml.forecast.sarima import Sarima
from ml.promotion import (
    NOISE_MULTIPLE,
    RESAMPLES,
    GateCandidate,
    GateDecision,
    bootstrap_weights,
    choose_best,
    weighted_mean_replicates,
)

FORECAST_MEMBERS = ("seasonal_naive", "adaptive_naive", "sarima", "prophet")
#: What a member costs to fit and explain: the gate's complexity of a configuration.
MEMBER_COST = {"seasonal_naive": 1, "adaptive_naive": 2, "sarima": 3, "prophet": 3}
SCORES = ("mape", "smape", "mase")


def build_forecaster(
    members: Sequence[str], season: int, level: float, weekly_season: int | None = None
) -> Forecaster:
    """The median ensemble of ``members`` (a single member is used alone).

    ``adaptive_naive`` picks ``season`` or ``weekly_season`` (default a week) per series. Each
    member falls back to simpler models where a series' history cannot carry it (a new
    application, as in ``ml.forecast.ensemble.default_ensemble``), under its own name.
    """
    unknown = set(members) - set(FORECAST_MEMBERS)
    if unknown or not members:
        raise ValueError(f"forecast members must be a non-empty subset of {FORECAST_MEMBERS}")
    naive = SeasonalNaive(season=1, level=level)
    built: dict[str, Callable[[], Forecaster]] = {
        "seasonal_naive": lambda: Fallback(
            (SeasonalNaive(season=season, level=level), naive), label="seasonal_naive"
        ),
        "adaptive_naive": lambda: Fallback(
            (
                AdaptiveSeasonalNaive(seasons=(season, weekly_season or 7 * season), level=level),
                naive,
            ),
            label="adaptive_naive",
        ),
        "sarima": lambda: Fallback(
            (Sarima(season=season, level=level), Sarima(season=1, level=level), naive),
            label="sarima",
        ),
        "prophet": lambda: Fallback((ProphetForecaster(level=level), naive), label="prophet"),
    }
    chosen = tuple(built[name]() for name in members)
    return chosen[0] if len(chosen) == 1 else Ensemble(members=chosen, combination="median")


@dataclass(frozen=True)
class ForecastSpec:
    """A forecaster configuration (what the registry versions; the horizon is a default)."""

    members: tuple[str, ...]
    season: int = 24
    weekly_season: int | None = 168
    level: float = 0.95

    def build(self) -> Forecaster:
        return build_forecaster(self.members, self.season, self.level, self.weekly_season)

    @property
    def complexity(self) -> float:
        return float(sum(MEMBER_COST[name] for name in self.members))

    def config(self, horizon: int) -> dict[str, Any]:
        """The registered model's configuration (``ml.pyfunc.forecaster.CONFIG_KEYS``)."""
        return {
            "members": list(self.members),
            "season": self.season,
            "weekly_season": self.weekly_season,
            "level": self.level,
            "horizon": horizon,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ForecastSpec:
        return cls(
            members=tuple(config["members"]),
            season=int(config["season"]),
            weekly_season=config.get("weekly_season"),
            level=float(config["level"]),
        )

    def baseline(self) -> ForecastSpec:
        """The seasonal naive with this season and level: the floor every model must beat."""
        return ForecastSpec(("seasonal_naive",), self.season, self.weekly_season, self.level)


def mean_score(results: Sequence[BacktestResult], score: str) -> float:
    """Mean over series, ignoring series where the score is undefined (MAPE at zeros, MASE of
    a series without seasonal variation); ``nan`` when no series defines it."""
    values = [getattr(r, score) for r in results if math.isfinite(getattr(r, score))]
    return float(np.mean(values)) if values else math.nan


@dataclass(frozen=True)
class ForecastTraining:
    """The backtested candidates and the gate's decision.

    Attributes:
        specs: each distinct candidate configuration, by name.
        same_as: candidate names dropped because they equal another (name -> kept name).
        results: per candidate, one backtest per series (in the order of the input).
        metrics: per candidate, the mean scores and interval coverage.
        decision: the gate's verdict (``decision.winner`` is a key of ``specs``).
    """

    specs: dict[str, ForecastSpec]
    same_as: dict[str, str]
    results: dict[str, list[BacktestResult]]
    metrics: dict[str, dict[str, float]]
    decision: GateDecision

    @property
    def winner(self) -> ForecastSpec:
        if self.decision.winner is None:
            raise ValueError(self.decision.reason)
        return self.specs[self.decision.winner]

    def per_series(self, labels: Sequence[str]) -> pd.DataFrame:
        """One row per series and candidate: the backtest scores."""
        return pd.DataFrame(
            [
                {
                    "series": label,
                    "candidate": name,
                    "model": r.model,
                    "mape": r.mape,
                    "smape": r.smape,
                    "mase": r.mase,
                    "coverage": r.coverage,
                }
                for name, results in self.results.items()
                for label, r in zip(labels, results, strict=True)
            ]
        )


def evaluate_forecasters(
    series: Sequence[pd.Series],
    candidates: Mapping[str, ForecastSpec],
    *,
    horizon: int,
    n_origins: int,
    incumbent: str | None = None,
    metric: str = "mase",
    resamples: int = RESAMPLES,
    seed: int = 0,
    noise_multiple: float = NOISE_MULTIPLE,
    progress: Callable[[str], None] | None = None,
) -> ForecastTraining:
    """Backtest every distinct candidate on every series and let the gate choose.

    Args:
        series: regular hourly series, each long enough for ``n_origins`` origins.
        candidates: configurations by name, in order; one equal to an earlier one is dropped.
        horizon: steps forecast from each origin.
        n_origins: backtest origins per series.
        incumbent: the name of the champion's configuration, if any.
        metric: lower-is-better gate metric (one of ``SCORES``).
        resamples, seed, noise_multiple: the gate's noise measurement (``ml.promotion``).
        progress: called with each candidate's name before it is backtested.
    """
    if metric not in SCORES:
        raise ValueError(f"gate metric must be one of {SCORES}, got {metric!r}")
    specs: dict[str, ForecastSpec] = {}
    same_as: dict[str, str] = {}
    for name, spec in candidates.items():
        kept = next((k for k, s in specs.items() if s == spec), None)
        if kept is None:
            specs[name] = spec
        else:
            same_as[name] = kept
    incumbent_name = same_as.get(incumbent, incumbent) if incumbent else None

    results: dict[str, list[BacktestResult]] = {}
    for name, spec in specs.items():
        if progress is not None:
            progress(name)
        forecaster = spec.build()
        results[name] = [
            rolling_origin_backtest(forecaster, values, horizon, spec.season, n_origins)
            for values in series
        ]
    metrics = {
        name: {
            **{score: mean_score(rs, score) for score in SCORES},
            "coverage": mean_score(rs, "coverage"),
        }
        for name, rs in results.items()
    }
    weights = bootstrap_weights(len(series), resamples, seed)
    decision = choose_best(
        [
            GateCandidate(
                name=name,
                complexity=spec.complexity,
                value=metrics[name][metric],
                replicates=weighted_mean_replicates(
                    np.array([getattr(r, metric) for r in results[name]], dtype=float), weights
                ),
                incumbent=name == incumbent_name,
            )
            for name, spec in specs.items()
        ],
        metric,
        lower_is_better=True,
        noise_multiple=noise_multiple,
    )
    return ForecastTraining(specs, same_as, results, metrics, decision)
