"""Transform group: the dbt project (raw -> staging -> intermediate -> marts) as assets."""

from assets.transform.dbt_models import dbt_model_assets

__all__ = ["dbt_model_assets"]
