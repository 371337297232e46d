"""Model training assets: evaluate candidates, register the best in MLflow as `champion`."""

from assets.ml_models.detector import DETECTOR_KEY, DETECTOR_METRICS, anomaly_detector
from assets.ml_models.forecaster import FORECASTER_KEY, request_rate_forecaster
from assets.ml_models.promotion import BEST_OF_CANDIDATES, CHAMPION

__all__ = [
    "BEST_OF_CANDIDATES",
    "CHAMPION",
    "DETECTOR_KEY",
    "DETECTOR_METRICS",
    "FORECASTER_KEY",
    "anomaly_detector",
    "request_rate_forecaster",
]
