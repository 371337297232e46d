"""Figures of the detector evaluation, logged with the training run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from ml.anomaly.fleet import SeriesId
    from ml.anomaly.training import Evaluated


def score_distribution(spiked: np.ndarray, clean: np.ndarray, threshold: float) -> Figure:
    """Histogram of the calibrated scores on clean and on spiked held-out points."""
    figure = Figure(figsize=(8, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bins = np.linspace(0, 1, 41)
    axes.hist(clean, bins=bins, alpha=0.6, label=f"clean points ({len(clean)})", log=True)
    axes.hist(spiked, bins=bins, alpha=0.6, label=f"injected spikes ({len(spiked)})", log=True)
    axes.axvline(threshold, color="k", linestyle="--", linewidth=1, label="threshold")
    axes.set_xlabel("anomaly score")
    axes.set_ylabel("points")
    axes.legend(fontsize="small")
    return figure


def anomaly_timeline(evaluations: Mapping[SeriesId, Evaluated], threshold: float) -> Figure:
    """Held-out hours of a few series: observed (with injected spikes), expected, flagged."""
    figure = Figure(figsize=(10, 2.6 * max(1, len(evaluations))), layout="constrained")
    FigureCanvasAgg(figure)
    for row, ((series_id, metric), evaluated) in enumerate(evaluations.items(), start=1):
        result = evaluated.result
        axes = figure.add_subplot(len(evaluations), 1, row)
        axes.plot(result.index, result.values, linewidth=1, label="observed")
        axes.plot(result.index, result.expected, linewidth=1, linestyle="--", label="expected")
        spikes = evaluated.truth
        axes.scatter(
            result.index[spikes], result.values[spikes], marker="x", color="k", label="injected"
        )
        flagged = np.asarray(result.scores) >= threshold
        axes.scatter(
            result.index[flagged],
            result.values[flagged],
            s=60,
            facecolors="none",
            edgecolors="red",
            label="flagged",
        )
        axes.set_title(f"{series_id} {metric}", fontsize="small")
        axes.legend(fontsize="x-small", loc="upper left")
    return figure
