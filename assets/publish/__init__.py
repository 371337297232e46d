"""Publishing assets: the champion models' outputs, upserted into the ``analytics`` schema."""

from assets.publish.anomalies import anomalies
from assets.publish.budgets import budget_projections
from assets.publish.forecasts import forecasts

__all__ = ["anomalies", "budget_projections", "forecasts"]
