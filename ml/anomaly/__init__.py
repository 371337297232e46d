"""Online anomaly detectors: ``fit`` on history, ``score`` the points that follow it.

Every detector returns a ``DetectorResult``: a score in [0, 1] per point, the decision, the
expected value and the deviation from it; ``DetectorResult.anomalies()`` lists the flagged points
with their series, metric, value, expected value and deviation. ``EnsembleDetector`` (robust
baseline + Isolation Forest + LSTM autoencoder, score fusion) is the published detector.
"""

from ml.anomaly.base import (
    DEFAULT_THRESHOLD,
    Anomaly,
    Detector,
    DetectorResult,
    NotFittedError,
    OnlineDetector,
)
from ml.anomaly.baseline import RobustBaseline
from ml.anomaly.ensemble import EnsembleDetector, default_members
from ml.anomaly.isolation_forest import IsolationForestDetector
from ml.anomaly.lstm_autoencoder import LstmAutoencoderDetector

__all__ = [
    "DEFAULT_THRESHOLD",
    "Anomaly",
    "Detector",
    "DetectorResult",
    "EnsembleDetector",
    "IsolationForestDetector",
    "LstmAutoencoderDetector",
    "NotFittedError",
    "OnlineDetector",
    "RobustBaseline",
    "default_members",
]
