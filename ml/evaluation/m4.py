"""Evaluate forecasters on M4 competition data: sMAPE, MASE and OWA per model, as M4 does.

The M4 wide CSV format (``Hourly-train.csv``, ``Weekly-train.csv``, ...) has one series per row:
``V1`` is the id, the values follow, rows of different lengths are padded with empty cells. The
files carry no timestamps, so each series gets a synthetic regular DatetimeIndex at ``freq`` that
ENDS at :data:`SYNTHETIC_END` (only Prophet looks at it; its cycles have a free phase, so the date
does not matter). Counting back from a fixed end keeps long series inside pandas' timestamp range
(1677-2262): 835 yearly points counted forward from 2000 would end past the year 2800. The few
longer than that range (yearly series of more than ~340 points) keep their newest points, and
the number of points dropped is reported.

One series never aborts the evaluation: a model that fails on a series is recorded (series,
model, error) and scored there with Naive2's forecast, as a production fallback would stand in;
an ensemble combines the members that did forecast. The failures are counted per model.

Scores follow the M4 R evaluation code: per series sMAPE and MASE (scaled by the in-sample
seasonal-naive MAE), averaged over series; OWA is the mean of the averaged sMAPE and MASE, each
relative to Naive2's (computed here, on the same series, with :class:`ml.forecast.Naive2`).
Interval scores (coverage, MSIS) are reported beside them.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from ml.evaluation.metrics import coverage, mase, msis, owa, smape
from ml.forecast.base import Forecast, Forecaster
from ml.forecast.ensemble import Ensemble
from ml.forecast.naive import Naive2, SeasonalNaive

# Pandas offset aliases for M4's seasonal periods. Ambiguous for 1 (yearly, weekly and daily
# data all score with season 1 in M4): prefer :mod:`ml.forecast.frequency`.
_FREQ_BY_SEASON = {1: "YS", 4: "QS", 12: "MS", 52: "W-MON", 7: "D", 24: "h"}

SYNTHETIC_END = "2019-12-30"

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class M4Series:
    """One M4 series: its training part (with a synthetic time index) and its test values.

    ``dropped`` counts the oldest training points left out because pandas cannot date them.
    """

    series_id: str
    train: pd.Series
    test: np.ndarray
    dropped: int = 0


@dataclass(frozen=True)
class ModelScore:
    """One model's M4 scores, averaged over the evaluated series.

    ``seconds`` is the summed forecasting time over series (for an ensemble, its members');
    with parallel workers it exceeds the wall-clock time. ``failures`` counts series where the
    model failed (scored with Naive2's forecast there), ``fallbacks`` series where a simpler
    model stood in for it (a short or non-seasonal history).
    """

    model: str
    smape: float
    mase: float
    owa: float
    coverage: float
    msis: float
    seconds: float
    failures: int = 0
    fallbacks: int = 0


@dataclass(frozen=True, eq=False)
class M4Evaluation:
    """The result of :func:`evaluate_m4`."""

    horizon: int
    season: int
    n_series: int
    naive2_smape: float
    naive2_mase: float
    scores: tuple[ModelScore, ...]
    per_series: pd.DataFrame
    wall_seconds: float
    failures: tuple[dict[str, str], ...] = ()
    dropped_points: int = 0

    def score(self, model: str) -> ModelScore:
        """The scores of the model named ``model``."""
        for score in self.scores:
            if score.model == model:
                return score
        raise KeyError(f"{model} was not evaluated")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (per-series scores excluded)."""
        return {
            "horizon": self.horizon,
            "season": self.season,
            "n_series": self.n_series,
            "naive2": {"smape": self.naive2_smape, "mase": self.naive2_mase},
            "models": {score.model: asdict(score) for score in self.scores},
            "wall_seconds": self.wall_seconds,
            "failures": list(self.failures),
            "dropped_points": self.dropped_points,
        }


def frequency_for_season(season: int) -> str:
    """The pandas frequency alias of an M4 seasonal period (24 -> ``h``, 7 -> ``D``, ...)."""
    try:
        return _FREQ_BY_SEASON[season]
    except KeyError:
        raise ValueError(f"no M4 frequency has season {season}; pass freq explicitly") from None


def read_m4_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Read an M4 wide CSV: ``{series id: values}`` with the trailing empty cells dropped.

    Raises:
        ValueError: a value is missing between two present ones, or an id repeats.
    """
    series: dict[str, np.ndarray] = {}
    with Path(path).open(newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows)
        if not header or header[0] != "V1":
            raise ValueError(f"{path}: not an M4 file (first column is {header[:1]}, not V1)")
        for row in rows:
            series_id, cells = row[0], row[1:]
            while cells and cells[-1] == "":
                cells.pop()
            if "" in cells:
                raise ValueError(f"{path}: series {series_id} has a gap")
            if series_id in series:
                raise ValueError(f"{path}: series {series_id} appears twice")
            series[series_id] = np.array(cells, dtype=float)
    return series


def synthetic_index(periods: int, freq: str, end: str = SYNTHETIC_END) -> pd.DatetimeIndex:
    """``periods`` regular timestamps at ``freq`` ending at (or just before) ``end``.

    Raises:
        pandas.errors.OutOfBoundsDatetime: the span reaches before 1677.
    """
    last = pd.date_range(end=end, periods=1, freq=freq)[0]
    offset = pd.tseries.frequencies.to_offset(freq)
    first = last - (periods - 1) * offset
    return pd.date_range(first, periods=periods, freq=freq)


def _dated(series_id: str, values: np.ndarray, freq: str, end: str) -> tuple[pd.Series, int]:
    """The values on a synthetic index; the oldest points that cannot be dated are dropped."""
    keep = values.size
    while True:
        try:
            index = synthetic_index(keep, freq, end)
            break
        except (OverflowError, pd.errors.OutOfBoundsDatetime):
            keep = keep * 3 // 4
            if keep < 1:
                raise
    return pd.Series(values[values.size - keep :], index=index, name=series_id), values.size - keep


def load_m4(
    train_path: str | Path, test_path: str | Path, freq: str, end: str = SYNTHETIC_END
) -> list[M4Series]:
    """Pair the train and test files by series id, in the train file's order.

    Raises:
        ValueError: the two files do not hold the same series.
    """
    train, test = read_m4_csv(train_path), read_m4_csv(test_path)
    if set(train) != set(test):
        raise ValueError(
            f"train and test hold different series ({len(set(train) ^ set(test))} unmatched ids)"
        )
    dataset = []
    for series_id, values in train.items():
        dated, dropped = _dated(series_id, values, freq, end)
        if dropped:
            logger.warning("%s: %d oldest points cannot be dated at %s", series_id, dropped, freq)
        dataset.append(M4Series(series_id, dated, test[series_id], dropped))
    return dataset


def _base_forecasters(forecasters: Sequence[Forecaster], reference: Forecaster) -> list[Forecaster]:
    """Every distinct non-ensemble model to run: the listed ones, ensemble members, Naive2."""
    unique: list[Forecaster] = []
    for forecaster in [*forecasters, reference]:
        parts = forecaster.members if isinstance(forecaster, Ensemble) else (forecaster,)
        for part in parts:
            if part not in unique:
                unique.append(part)
    names = [part.name for part in unique]
    if len(set(names)) != len(names):
        raise ValueError(f"two differently configured models share a name: {sorted(names)}")
    return unique


def _forecast_one(
    series: M4Series, models: Sequence[Forecaster], horizon: int
) -> tuple[list[Forecast | None], list[float], list[dict[str, str]]]:
    """Every model's forecast of one series; ``None`` and a recorded error where one fails."""
    forecasts: list[Forecast | None] = []
    seconds: list[float] = []
    failures: list[dict[str, str]] = []
    for model in models:
        started = time.perf_counter()
        try:
            forecasts.append(model.forecast(series.train, horizon))
        except Exception as exc:  # recorded per series and reported; see the module docstring
            forecasts.append(None)
            failures.append(
                {
                    "series_id": series.series_id,
                    "model": model.name,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )
        seconds.append(time.perf_counter() - started)
    return forecasts, seconds, failures


def _stand_in(series: M4Series, reference: Forecast | None, horizon: int) -> Forecast:
    """Naive2's forecast, or the naive one if Naive2 failed too, for a model that failed."""
    if reference is not None:
        return reference
    return SeasonalNaive(season=1).forecast(series.train, horizon)


def _score(series: M4Series, forecast: Forecast, horizon: int, season: int) -> dict[str, Any]:
    actual, insample = series.test[:horizon], series.train.to_numpy()
    return {
        "series_id": series.series_id,
        "model": forecast.model,
        "fitted_by": forecast.fitted_by,
        "smape": smape(actual, forecast.point),
        "mase": mase(actual, forecast.point, insample, season),
        "coverage": coverage(actual, forecast.lower, forecast.upper),
        "msis": msis(actual, forecast.lower, forecast.upper, insample, season, forecast.level),
    }


def evaluate_m4(
    dataset: Sequence[M4Series],
    forecasters: Sequence[Forecaster],
    horizon: int,
    season: int,
    *,
    n_jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> M4Evaluation:
    """Forecast every series with every model and score them the M4 way.

    Each distinct model runs once per series: an :class:`Ensemble` combines its members'
    forecasts instead of refitting them, and Naive2 (the OWA reference) always runs. Series are
    spread over ``n_jobs`` worker processes (joblib).

    Args:
        dataset: the series (see :func:`load_m4`).
        forecasters: the models to score, reported under their ``name``.
        horizon: steps to forecast; the first ``horizon`` test values are scored.
        season: seasonal period for MASE, MSIS and Naive2 (24 for hourly).
        n_jobs: worker processes (1: in this process).
        progress: called with the number of series just finished.

    Raises:
        ValueError: a series has fewer than ``horizon`` test values, no series were given, or
            two different models share a name.

    A model that fails on a series is recorded in ``failures`` and scored there with Naive2's
    forecast (``ModelScore.failures`` counts them); the evaluation goes on.
    """
    # A third of the length is the docstring; the rest is one fan-out and one scoring pass.
    if not dataset:
        raise ValueError("no series to evaluate")
    for series in dataset:
        if series.test.size < horizon:
            raise ValueError(
                f"series {series.series_id} has {series.test.size} test values < {horizon}"
            )
    reference = Naive2(season=season)
    base = _base_forecasters(forecasters, reference)
    reported = list(dict.fromkeys([*forecasters, reference]))
    names = [forecaster.name for forecaster in reported]
    if len(set(names)) != len(names):
        raise ValueError(f"two different models would be reported under one name: {names}")
    started = time.perf_counter()
    results: Iterator[tuple[list[Forecast | None], list[float], list[dict[str, str]]]] = Parallel(
        n_jobs=n_jobs, return_as="generator"
    )(delayed(_forecast_one)(series, base, horizon) for series in dataset)

    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    failed = dict.fromkeys((forecaster.name for forecaster in reported), 0)
    seconds = dict.fromkeys((model.name for model in base), 0.0)
    for series, (forecasts, timings, errors) in zip(dataset, results, strict=True):
        failures.extend(errors)
        by_model = dict(zip(base, forecasts, strict=True))
        for model, elapsed in zip(base, timings, strict=True):
            seconds[model.name] += elapsed
        for forecaster in reported:
            forecast: Forecast | None
            if isinstance(forecaster, Ensemble):
                parts = [by_model[member] for member in forecaster.members]
                forecast = forecaster.combine(parts) if any(p is not None for p in parts) else None
            else:
                forecast = by_model[forecaster]
            if forecast is None:
                failed[forecaster.name] += 1
                forecast = replace(
                    _stand_in(series, by_model[reference], horizon), model=forecaster.name
                )
            rows.append(_score(series, forecast, horizon, season))
        if progress is not None:
            progress(1)
    for failure in failures:
        logger.warning("%(model)s failed on %(series_id)s: %(error)s", failure)
    wall_seconds = time.perf_counter() - started

    per_series = pd.DataFrame(rows)
    # numpy's mean, not pandas' (which skips nan): an undefined score must not vanish.
    means = per_series.groupby("model", sort=False)[["smape", "mase", "coverage", "msis"]].agg(
        lambda values: float(np.mean(values.to_numpy()))
    )
    naive2_smape, naive2_mase = means.loc[reference.name, ["smape", "mase"]]
    scores = []
    for forecaster in reported:
        name = forecaster.name
        members = forecaster.members if isinstance(forecaster, Ensemble) else (forecaster,)
        scores.append(
            ModelScore(
                model=name,
                smape=float(means.loc[name, "smape"]),
                mase=float(means.loc[name, "mase"]),
                owa=owa(
                    float(means.loc[name, "smape"]),
                    float(means.loc[name, "mase"]),
                    float(naive2_smape),
                    float(naive2_mase),
                ),
                coverage=float(means.loc[name, "coverage"]),
                msis=float(means.loc[name, "msis"]),
                seconds=math.fsum(seconds[member.name] for member in members),
                failures=failed[name],
                fallbacks=int(
                    (per_series.loc[per_series["model"] == name, "fitted_by"] != "").sum()
                ),
            )
        )
    return M4Evaluation(
        horizon=horizon,
        season=season,
        n_series=len(dataset),
        naive2_smape=float(naive2_smape),
        naive2_mase=float(naive2_mase),
        scores=tuple(scores),
        per_series=per_series,
        wall_seconds=wall_seconds,
        failures=tuple(failures),
        dropped_points=sum(series.dropped for series in dataset),
    )
