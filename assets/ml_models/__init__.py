"""Model training assets: evaluate, log to MLflow, register, gate the `champion` alias."""

from assets.ml_models.detector import DETECTOR_KEY, anomaly_detector
from assets.ml_models.forecaster import FORECASTER_KEY, request_rate_forecaster
from assets.ml_models.promotion import BEATS_CHAMPION_AND_BASELINE, CHAMPION

ML_MODELS_GROUP = "ml_models"

__all__ = [
    "BEATS_CHAMPION_AND_BASELINE",
    "CHAMPION",
    "DETECTOR_KEY",
    "FORECASTER_KEY",
    "ML_MODELS_GROUP",
    "anomaly_detector",
    "request_rate_forecaster",
]
