"""Daily-grain forecasts 7 to 30 days ahead: accuracy and 95% interval coverage per horizon.

Request rates and cost are forecast per application and per tenant at daily grain for the
budget projections and the what-if scenarios. This backtest measures, for each model and for
each horizon (7, 14 and 30 days by default), the sMAPE, the MASE (weekly seasonal-naive scale)
and the empirical coverage of the nominal 95% interval, from ``n_origins`` rolling origins per
series, ``step`` days apart. Each model forecasts the longest horizon once per origin; the
shorter horizons score its first days (the direct LSTM's first 7 days of a 30-day forecast are
what production would publish for a 30-day horizon).

It also decides whether the LSTM earns a place in the median ensemble: the ensemble with it
must beat the ensemble without it on mean MASE at every horizon, by more than twice the
standard error of the per-forecast difference (paired over series and origins). The numbers are
reported either way.

Series come from :func:`hub_like_daily` (generated: the synthetic generator's weekly cycle,
growth, a level shift when an application switches model, Poisson counts, cost per request with
day-to-day noise) or from a file of real daily data (Prophet's Peyton Manning example).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from ml.evaluation.metrics import coverage, mase, smape
from ml.forecast.base import Forecast, Forecaster
from ml.forecast.ensemble import Ensemble

WEEK = 7
# The synthetic generator's weekend traffic relative to a weekday.
WEEKEND_WEIGHT = 0.45


def hub_like_daily(n_apps: int, days: int, seed: int = 0) -> dict[str, pd.Series]:
    """Daily request counts and cost of ``n_apps`` generated applications (two series each).

    Each application has a base volume (log-uniform, 200 to 20,000 requests a weekday), a
    weekend at 45% of a weekday, a growth rate of -0.2% to +0.6% a day, and in half of them a
    level shift of x0.6 to x1.6 at a random day (a model switch or a new customer). Counts are
    Poisson; cost is counts times a per-request cost with 8% lognormal daily noise (token mix).
    Series are named ``<app>/requests`` and ``<app>/cost_usd``.
    """
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-01-05", periods=days, freq="D")
    weekday = np.where(index.dayofweek >= 5, WEEKEND_WEIGHT, 1.0)
    t = np.arange(days)
    series: dict[str, pd.Series] = {}
    for app in range(n_apps):
        base = math.exp(rng.uniform(math.log(200), math.log(20_000)))
        level = base * weekday * np.exp(rng.uniform(-0.002, 0.006) * t)
        if rng.random() < 0.5:
            shift_at = int(rng.integers(days // 4, days - days // 4))
            level[shift_at:] *= rng.uniform(0.6, 1.6)
        counts = rng.poisson(level).astype(float)
        per_request = rng.uniform(0.0005, 0.02) * np.exp(rng.normal(0.0, 0.08, days))
        series[f"app{app:02d}/requests"] = pd.Series(counts, index=index)
        series[f"app{app:02d}/cost_usd"] = pd.Series(counts * per_request, index=index)
    return series


@dataclass(frozen=True)
class HorizonScore:
    """One model at one horizon, averaged over series and origins."""

    model: str
    horizon: int
    smape: float
    mase: float
    coverage: float
    forecasts: int


@dataclass(frozen=True, eq=False)
class DailyEvaluation:
    """The result of :func:`evaluate_daily`."""

    horizons: tuple[int, ...]
    n_series: int
    n_origins: int
    scores: tuple[HorizonScore, ...]
    per_forecast: pd.DataFrame
    failures: tuple[dict[str, str], ...]
    member_verdict: dict[str, Any]

    def score(self, model: str, horizon: int) -> HorizonScore:
        """The scores of ``model`` at ``horizon``."""
        for score in self.scores:
            if score.model == model and score.horizon == horizon:
                return score
        raise KeyError(f"{model} at horizon {horizon} was not evaluated")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: per model, per horizon."""
        models: dict[str, dict[str, Any]] = {}
        for score in self.scores:
            models.setdefault(score.model, {})[str(score.horizon)] = {
                "smape": score.smape,
                "mase": score.mase,
                "coverage_95": score.coverage,
                "forecasts": score.forecasts,
            }
        return {
            "horizons": list(self.horizons),
            "n_series": self.n_series,
            "n_origins": self.n_origins,
            "models": models,
            "failures": list(self.failures),
            "member_verdict": self.member_verdict,
        }


def _base_models(forecasters: Sequence[Forecaster]) -> list[Forecaster]:
    unique: list[Forecaster] = []
    for forecaster in forecasters:
        for part in forecaster.members if isinstance(forecaster, Ensemble) else (forecaster,):
            if part not in unique:
                unique.append(part)
    return unique


def _one_series(
    name: str,
    y: pd.Series,
    base: Sequence[Forecaster],
    reported: Sequence[Forecaster],
    horizons: Sequence[int],
    n_origins: int,
    step: int,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    longest = max(horizons)
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for origin_number in range(n_origins):
        cut = len(y) - longest - origin_number * step
        train, actual = y.iloc[:cut], y.iloc[cut : cut + longest].to_numpy(dtype=float)
        by_model: dict[Forecaster, Forecast | None] = {}
        for model in base:
            try:
                by_model[model] = model.forecast(train, longest)
            except Exception as exc:  # recorded and reported per series, never aborts the run
                by_model[model] = None
                failures.append(
                    {"series": name, "model": model.name, "error": f"{type(exc).__name__}: {exc}"}
                )
        insample = train.to_numpy(dtype=float)
        for forecaster in reported:
            if isinstance(forecaster, Ensemble):
                parts = [by_model[member] for member in forecaster.members]
                if all(part is None for part in parts):
                    continue
                forecast = forecaster.combine(parts)
            else:
                forecast = by_model[forecaster]
                if forecast is None:
                    continue
            for horizon in horizons:
                rows.append(
                    {
                        "series": name,
                        "origin": train.index[-1],
                        "model": forecaster.name,
                        "horizon": horizon,
                        "smape": smape(actual[:horizon], forecast.point[:horizon]),
                        "mase": mase(actual[:horizon], forecast.point[:horizon], insample, WEEK),
                        "coverage": coverage(
                            actual[:horizon], forecast.lower[:horizon], forecast.upper[:horizon]
                        ),
                    }
                )
    return rows, failures


def member_verdict(
    per_forecast: pd.DataFrame, without: str, with_member: str, horizons: Sequence[int]
) -> dict[str, Any]:
    """Whether ``with_member`` beats ``without`` on MASE at every horizon beyond the noise.

    The difference is paired per series and origin; "beyond the noise" is a mean improvement
    larger than two standard errors of the paired differences.
    """
    detail: dict[str, Any] = {}
    earns = True
    for horizon in horizons:
        frame = per_forecast[per_forecast["horizon"] == horizon].pivot_table(
            index=["series", "origin"], columns="model", values="mase"
        )
        if without not in frame or with_member not in frame:
            return {"kept": False, "reason": "one of the ensembles did not forecast"}
        diff = (frame[without] - frame[with_member]).dropna().to_numpy()
        improvement = float(diff.mean()) if diff.size else math.nan
        noise = 2 * float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else math.inf
        detail[str(horizon)] = {"mase_improvement": improvement, "two_standard_errors": noise}
        earns = earns and improvement > noise
    return {"kept": earns, "rule": "MASE improvement > 2 SE at every horizon", **detail}


def evaluate_daily(
    series: Mapping[str, pd.Series],
    forecasters: Sequence[Forecaster],
    horizons: Sequence[int] = (7, 14, 30),
    n_origins: int = 3,
    step: int = 7,
    *,
    candidate: tuple[str, str] | None = None,
    n_jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> DailyEvaluation:
    """Backtest ``forecasters`` on daily ``series`` at every horizon.

    Args:
        series: named regular daily series (no gaps).
        forecasters: models to score (an :class:`Ensemble` combines its members' forecasts).
        horizons: days ahead scored (each <= the longest, which is forecast once per origin).
        n_origins: forecast origins per series, the newest ``max(horizons)`` days before the end.
        step: days between origins.
        candidate: names of (the ensemble without, the ensemble with) a candidate member, for
            :func:`member_verdict`.
        n_jobs: worker processes.
        progress: called with the number of series just finished.

    Raises:
        ValueError: no series, or a series too short for its origins.
    """
    if not series:
        raise ValueError("no series to evaluate")
    horizons = tuple(sorted(set(horizons)))
    for name, values in series.items():
        if len(values) <= max(horizons) + (n_origins - 1) * step + 2 * WEEK:
            raise ValueError(f"{name}: {len(values)} days is too short for the backtest")
    base = _base_models(forecasters)
    results = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_one_series)(name, y, base, forecasters, horizons, n_origins, step)
        for name, y in series.items()
    )
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for series_rows, series_failures in results:
        rows.extend(series_rows)
        failures.extend(series_failures)
        if progress is not None:
            progress(1)
    per_forecast = pd.DataFrame(rows)
    scores = []
    for forecaster in forecasters:
        for horizon in horizons:
            part = per_forecast[
                (per_forecast["model"] == forecaster.name) & (per_forecast["horizon"] == horizon)
            ]
            scores.append(
                HorizonScore(
                    model=forecaster.name,
                    horizon=horizon,
                    smape=float(part["smape"].mean()),
                    mase=float(part["mase"].mean()),
                    coverage=float(part["coverage"].mean()),
                    forecasts=len(part),
                )
            )
    verdict = member_verdict(per_forecast, *candidate, horizons) if candidate else {}
    return DailyEvaluation(
        horizons=horizons,
        n_series=len(series),
        n_origins=n_origins,
        scores=tuple(scores),
        per_forecast=per_forecast,
        failures=tuple(failures),
        member_verdict=verdict,
    )


def read_daily_csv(path: str, column: str = "y", exponentiate: bool = False) -> pd.Series:
    """A ``ds, y`` CSV as a regular daily series; missing days are filled by linear
    interpolation (Prophet's examples have gaps). ``exponentiate`` undoes a log scale."""
    frame = pd.read_csv(path, parse_dates=["ds"])
    values = frame.set_index("ds")[column].astype(float).sort_index()
    values = values[~values.index.duplicated()].asfreq("D").interpolate()
    return np.exp(values) if exponentiate else values
