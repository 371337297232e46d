"""PNG plots of a forecast with its prediction interval against the history and the actuals.

Built on ``matplotlib.figure.Figure`` with the Agg canvas directly, never ``pyplot``: no global
figure registry, no backend switch, safe in worker processes and headless runs. The MLflow code
can log the returned figure (``mlflow.log_figure``) or the written file (``log_artifact``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ml.forecast.base import Forecast


def plot_forecast(
    forecast: Forecast,
    history: pd.Series,
    actual: pd.Series | np.ndarray | None = None,
    *,
    history_points: int | None = None,
    title: str | None = None,
) -> Figure:
    """A figure: the history, the point forecast, its interval band and (optionally) actuals.

    Args:
        forecast: the forecast to draw.
        history: the data the forecast was fitted on.
        actual: the realised values over the forecast horizon (same length as the forecast).
        history_points: draw only this many trailing history points (default: all).
        title: the axes title (default: the model name and interval level).
    """
    if actual is not None and len(actual) != forecast.horizon:
        raise ValueError(f"actual has {len(actual)} values, the forecast {forecast.horizon}")
    shown = history if history_points is None else history.iloc[-history_points:]
    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(shown.index, shown.to_numpy(), color="0.35", linewidth=1, label="history")
    axes.fill_between(
        forecast.index,
        forecast.lower,
        forecast.upper,
        color="tab:blue",
        alpha=0.2,
        linewidth=0,
        label=f"{forecast.level:.0%} interval",
    )
    axes.plot(forecast.index, forecast.point, color="tab:blue", linewidth=1.5, label="forecast")
    if actual is not None:
        axes.plot(
            forecast.index,
            np.asarray(actual, dtype=float),
            color="tab:orange",
            linewidth=1.2,
            label="actual",
        )
    axes.set_title(title or f"{forecast.model}: forecast with {forecast.level:.0%} interval")
    axes.legend(loc="upper left", fontsize="small")
    axes.grid(alpha=0.3)
    return figure


def save_forecast_plot(
    path: str | Path,
    forecast: Forecast,
    history: pd.Series,
    actual: pd.Series | np.ndarray | None = None,
    *,
    history_points: int | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Write :func:`plot_forecast`'s figure as a PNG file and return its path."""
    target = Path(path)
    figure = plot_forecast(forecast, history, actual, history_points=history_points, title=title)
    figure.savefig(target, format="png", dpi=dpi)
    return target
