"""Asset group names, defined once: the assets set them, the jobs select by them.

One group per ``assets/`` subpackage (asset checks have no group; they run with their asset).
"""

INGESTION = "ingestion"
TRANSFORM = "transform"
ML_MODELS = "ml_models"
PUBLISH = "publish"
INCIDENTS = "incidents"
ALERTS = "alerts"
