"""An LSTM forecaster (direct multi-step), a candidate member of the daily ensemble.

The network reads the last ``lookback`` values (log-scaled when positive, standardised) and
outputs all ``horizon`` steps at once (direct strategy: no error feedback through recursion).
Training windows are every ``lookback + horizon`` slice of the history; the newest
``calibration`` share of the windows is held out of training and gives the interval: per step,
the ``level`` quantile of the absolute held-out errors (split-conformal), so the interval's width
is measured, not assumed. Torch is imported inside :meth:`LstmForecaster.forecast`.

It needs more history than the statistical members (``lookback + horizon`` plus enough windows
to learn from): shorter histories raise :class:`~ml.forecast.base.HistoryTooShort`, which a
:class:`~ml.forecast.fallback.Fallback` hands to a simpler model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml.forecast.base import Forecast, build_forecast, future_index, use_log, validate_history

MIN_WINDOWS = 24


@dataclass(frozen=True)
class LstmForecaster:
    """One-layer LSTM with a linear head emitting every horizon step.

    Attributes:
        lookback: input window (points).
        hidden: LSTM state size.
        epochs: full-batch Adam epochs.
        learning_rate: Adam's step size.
        calibration: share of the newest windows held out to size the interval.
        seed: torch's seed (a fixed seed gives the same forecast).
        level: nominal coverage of the interval.
    """

    lookback: int = 28
    hidden: int = 32
    epochs: int = 80
    learning_rate: float = 0.01
    calibration: float = 0.25
    seed: int = 0
    level: float = 0.95

    @property
    def name(self) -> str:
        return "lstm"

    def forecast(self, y: pd.Series, horizon: int) -> Forecast:
        import torch

        width = self.lookback + horizon
        values = validate_history(y, horizon, min_length=width + MIN_WINDOWS)
        logged = use_log(values, "auto")
        series = np.log(values) if logged else values
        mean, scale = float(series.mean()), float(series.std()) or 1.0
        z = (series - mean) / scale
        windows = np.lib.stride_tricks.sliding_window_view(z, width)
        inputs, targets = windows[:, : self.lookback], windows[:, self.lookback :]
        threads = torch.get_num_threads()
        # Tiny matrices: torch's thread pool only contends with the other workers (a 150-epoch
        # fit took minutes on a loaded two-core machine with the default pool).
        torch.set_num_threads(1)
        try:
            point, lower, upper = self._fit_predict(torch, z, inputs, targets, horizon)
        finally:
            torch.set_num_threads(threads)
        point, lower, upper = (part * scale + mean for part in (point, lower, upper))
        if logged:
            point, lower, upper = np.exp(point), np.exp(lower), np.exp(upper)
        return build_forecast(self.name, future_index(y, horizon), point, lower, upper, self.level)

    def _fit_predict(
        self, torch: Any, z: np.ndarray, inputs: np.ndarray, targets: np.ndarray, horizon: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point and bounds on the standardised scale."""
        held_out = max(4, int(len(inputs) * self.calibration))
        fit_x, fit_y = inputs[:-held_out], targets[:-held_out]
        torch.manual_seed(self.seed)
        lstm = torch.nn.LSTM(1, self.hidden, batch_first=True)
        head = torch.nn.Linear(self.hidden, horizon)
        parameters = [*lstm.parameters(), *head.parameters()]
        optimiser = torch.optim.Adam(parameters, lr=self.learning_rate)

        def predict(x: np.ndarray) -> torch.Tensor:
            tensor = torch.as_tensor(x, dtype=torch.float32).unsqueeze(-1)
            output, _ = lstm(tensor)
            return head(output[:, -1, :])

        train_x = np.ascontiguousarray(fit_x)
        train_y = torch.as_tensor(np.ascontiguousarray(fit_y), dtype=torch.float32)
        for _ in range(self.epochs):
            optimiser.zero_grad()
            loss = torch.nn.functional.mse_loss(predict(train_x), train_y)
            loss.backward()
            optimiser.step()

        with torch.no_grad():
            held = predict(np.ascontiguousarray(inputs[-held_out:])).numpy()
            point_z = predict(np.ascontiguousarray(z[-self.lookback :][None, :])).numpy()[0]
        errors = np.abs(held - targets[-held_out:])
        rank = min(held_out - 1, int(np.ceil((held_out + 1) * self.level)) - 1)
        width_z = np.sort(errors, axis=0)[rank]
        return point_z, point_z - width_z, point_z + width_z
