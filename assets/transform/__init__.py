"""Transform group: the dbt project (raw -> staging -> intermediate -> marts) as assets."""

from assets.transform.dbt_models import dbt_daily_models, dbt_hourly_models

__all__ = ["dbt_daily_models", "dbt_hourly_models"]
