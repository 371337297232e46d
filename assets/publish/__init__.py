"""Publishing assets: the champion models' outputs, upserted into the ``analytics`` schema."""

from assets.publish.anomalies import anomaly_scores
from assets.publish.budgets import budget_projections
from assets.publish.forecasts import forecasts

PUBLISH_GROUP = "publish"

__all__ = ["PUBLISH_GROUP", "anomaly_scores", "budget_projections", "forecasts"]
