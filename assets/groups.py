"""Names the asset definitions and orchestration share, defined once: group names (the assets
set them, the jobs select by them) and the asset keys a sensor watches (as paths, so importing
them loads no asset module).

One group per ``assets/`` subpackage (asset checks have no group; they run with their asset).
"""

INGESTION = "ingestion"
TRANSFORM = "transform"
ML_MODELS = "ml_models"
PUBLISH = "publish"
INCIDENTS = "incidents"
ALERTS = "alerts"

# What the alertables are made from: the alert outbox asset depends on these, and the alerts
# sensor watches them for new materialisations.
ALERT_SOURCE_PATHS: tuple[tuple[str, str], ...] = (
    ("analytics", "incidents"),
    ("analytics", "anomalies"),
    ("analytics", "budget_projections"),
    ("marts", "fct_slo_burn_rate_alerts"),
)
