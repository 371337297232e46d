"""An LSTM autoencoder (PyTorch Lightning, CPU) over sliding windows; the reconstruction error of
the newest point is the raw score and its reconstruction the expected value."""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ml.anomaly.base import OnlineDetector
from ml.anomaly.seasonal import global_scale

# Lightning announces every Trainer (accelerators, tips) at INFO; a detector trains several per
# series, so those lines are muted while it trains and the levels restored afterwards.
_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning")


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            # Lightning suggests DataLoader workers; for a few hundred tiny windows they cost more.
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*small compared to the logging.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextmanager
def _reproducible() -> Iterator[None]:
    """Deterministic kernels on one intra-op thread while training, then the caller's settings.

    The same data and seed then give the same weights on any machine: a multi-threaded
    reduction sums in an order that depends on the core count. For windows this small one
    thread costs nothing measurable (the hand-offs outweigh the work).
    """
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


# Normalised values beyond this are clipped before they reach the network: one huge spike in the
# training data would otherwise dominate the loss. The raw score still sees it as a large error.
_CLIP = 10.0


class LstmAutoencoder(pl.LightningModule):
    """Encoder LSTM -> latent vector -> decoder LSTM, reconstructing a window of one channel."""

    def __init__(self, hidden: int = 16, latent: int = 4, learning_rate: float = 5e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = nn.LSTM(1, hidden, batch_first=True)
        self.to_latent = nn.Linear(hidden, latent)
        self.from_latent = nn.Linear(latent, hidden)
        self.decoder = nn.LSTM(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        self.learning_rate = learning_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.encoder(x)
        z = self.to_latent(h[-1])
        seed = self.from_latent(z).unsqueeze(1).expand(-1, x.shape[1], -1)
        out, _ = self.decoder(seed)
        return self.head(out)

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (x,) = batch
        return nn.functional.mse_loss(self(x), x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)


def _train(
    model: LstmAutoencoder, windows: np.ndarray, epochs: int, seed: int, batch_size: int
) -> None:
    data = TensorDataset(torch.from_numpy(windows.copy()).unsqueeze(-1))
    loader = DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    with _quiet_lightning(), _reproducible(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
        )
        trainer.fit(model, loader)


def train_shared_network(
    windows: Sequence[np.ndarray],
    *,
    hidden: int = 16,
    latent: int = 4,
    learning_rate: float = 5e-3,
    epochs: int = 10,
    batch_size: int = 128,
    max_windows: int = 20_000,
    seed: int = 0,
) -> LstmAutoencoder:
    """One autoencoder for many series: trained on their pooled normalised windows.

    A global model: each series' windows are already centred and scaled by that series
    (``LstmAutoencoderDetector.training_windows``), so the network learns shapes common to the
    fleet, and a fleet of a hundred series trains one network instead of a hundred. When the
    pool holds more than ``max_windows`` windows, an evenly spaced subset of each series is kept.

    Args:
        windows: per series, an array ``(n, window)`` of training windows (same ``window``).
        hidden, latent, learning_rate: the network (see ``LstmAutoencoder``).
        epochs: passes over the pooled windows.
        batch_size: windows per batch.
        max_windows: cap on the pooled windows.
        seed: seed of initialisation, subsampling and shuffling.
    """
    arrays = [w for w in windows if len(w)]
    if not arrays:
        raise ValueError("no training windows to train a shared network on")
    total = sum(len(w) for w in arrays)
    if total > max_windows:
        keep = max_windows / total
        arrays = [
            w[np.linspace(0, len(w) - 1, max(1, int(len(w) * keep))).astype(int)] for w in arrays
        ]
    pooled = np.concatenate(arrays).astype(np.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LstmAutoencoder(hidden, latent, learning_rate)
    _train(model, pooled, epochs, seed, batch_size)
    return model


class LstmAutoencoderDetector(OnlineDetector):
    """LSTM autoencoder over the last ``window`` points; raw score = error on the newest point.

    Works on the seasonally adjusted series, normalised with the training median and spread.
    Point ``t`` is scored by reconstructing the window of points ``t - window + 1 .. t`` with a
    model trained only on windows that end before ``t``: ``score`` walks the series in blocks of
    ``refit_every`` points and, before each block, fine-tunes a copy of the model for
    ``refit_epochs`` on the trailing ``max_history`` points. Training is seeded (``seed``) and
    leaves the global RNG untouched. The calibration's reference is the in-sample error on the
    training windows.

    Given a ``network`` (from ``train_shared_network``), ``fit`` does not train: the series
    keeps its own normalisation and calibration and shares the network with the others.

    Args:
        window: points per window.
        hidden: LSTM width.
        latent: bottleneck width.
        epochs: epochs of the first fit.
        refit_epochs: epochs of each fine-tune.
        refit_every: points scored between fine-tunes.
        max_history: points a fine-tune trains on (the most recent ones).
        batch_size: windows per batch.
        learning_rate: Adam's step size.
        seed: seed of initialisation and shuffling.
        network: a trained network shared with other series (not trained again).
        **options: see ``OnlineDetector``.
    """

    name = "lstm_autoencoder"

    def __init__(
        self,
        window: int = 32,
        *,
        hidden: int = 16,
        latent: int = 4,
        epochs: int = 40,
        refit_epochs: int = 8,
        refit_every: int = 1000,
        max_history: int = 2000,
        batch_size: int = 64,
        learning_rate: float = 5e-3,
        seed: int = 0,
        network: LstmAutoencoder | None = None,
        **options: object,
    ) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        if window < 2 or refit_every < 1:
            raise ValueError("window must be at least 2 and refit_every positive")
        self.window = window
        self.hidden = hidden
        self.latent = latent
        self.epochs = epochs
        self.refit_epochs = refit_epochs
        self.refit_every = refit_every
        self.max_history = max_history
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self.network = network
        self._center = 0.0
        self._scale = 1.0
        self._model: LstmAutoencoder | None = None

    @property
    def history_points(self) -> int:
        return max(self.max_history, self.window)

    def _windows(self, normalised: np.ndarray) -> np.ndarray:
        clipped = np.clip(normalised, -_CLIP, _CLIP)
        return sliding_window_view(clipped, self.window).astype(np.float32)

    @staticmethod
    def _center_scale(residual: np.ndarray) -> tuple[float, float]:
        return float(np.median(residual)), global_scale(residual)

    def _normalise(self, residual: np.ndarray) -> np.ndarray:
        self._center, self._scale = self._center_scale(residual)
        return (residual - self._center) / self._scale

    def training_windows(self, train: pd.Series) -> np.ndarray:
        """The normalised windows ``fit`` would train on (input of ``train_shared_network``)."""
        residual = self.residual(train)
        if len(residual) < self.window + 1:
            return np.zeros((0, self.window), dtype=np.float32)
        center, scale = self._center_scale(residual)
        return self._windows((residual - center) / scale)[-self.max_history :]

    def _train(self, model: LstmAutoencoder, windows: np.ndarray, epochs: int, seed: int) -> None:
        _train(model, windows, epochs, seed, self.batch_size)

    @staticmethod
    def _reconstruct_last(model: LstmAutoencoder, windows: np.ndarray) -> np.ndarray:
        model.eval()
        threads = torch.get_num_threads()
        try:
            # A few windows per call: intra-op threads only add hand-offs, and on a busy
            # machine, scoring runs with two threads took minutes where one thread takes 0.3 s.
            torch.set_num_threads(1)
            with torch.no_grad():
                out = model(torch.from_numpy(windows.copy()).unsqueeze(-1))
        finally:
            torch.set_num_threads(threads)
            model.train()
        return out[:, -1, 0].numpy().astype(float)

    def _fit(self, residual: np.ndarray) -> np.ndarray:
        if len(residual) < self.window + 1:
            raise ValueError(
                f"{self.name}: need more than {self.window} training points, got {len(residual)}"
            )
        normalised = self._normalise(residual)
        windows = self._windows(normalised)
        if self.network is not None:
            model = self.network
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = LstmAutoencoder(self.hidden, self.latent, self.learning_rate)
            self._train(model, windows[-self.max_history :], self.epochs, self.seed)
        self._model = model
        recon = self._reconstruct_last(model, windows)
        return np.abs(recon - np.clip(normalised[self.window - 1 :], -_CLIP, _CLIP))

    def _score(self, residual: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        assert self._model is not None
        normalised = (residual - self._center) / self._scale
        windows = self._windows(normalised)
        # windows[k] ends at point k + window - 1: point i is scored with windows[i - window + 1].
        first = start - self.window + 1
        model = self._model
        n = len(residual) - start
        recon = np.empty(n)
        for block in range(0, n, self.refit_every):
            if block > 0:
                if model is self._model:
                    # Fine-tune a copy: the fitted model must score the next call the same way.
                    model = copy.deepcopy(self._model)
                end = first + block
                history = windows[max(0, end - self.max_history) : end]
                self._train(model, history, self.refit_epochs, self.seed + block)
            stop = min(block + self.refit_every, n)
            recon[block:stop] = self._reconstruct_last(model, windows[first + block : first + stop])
        raw = np.abs(recon - np.clip(normalised[start:], -_CLIP, _CLIP))
        return raw, recon * self._scale + self._center
