"""Quality checks: Great Expectations suites on the raw tables and the marts, as asset checks."""

from assets.quality.checks import mart_quality_checks, raw_quality_checks

__all__ = ["mart_quality_checks", "raw_quality_checks"]
