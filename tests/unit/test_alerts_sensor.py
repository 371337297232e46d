"""The alerts sensor asks for one run per new materialisation of an alert source."""

from __future__ import annotations

import dagster as dg

from orchestration.sensors import alerts_sensor


def test_sensor_runs_once_per_new_source_materialisation() -> None:
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        assert isinstance(alerts_sensor(context), dg.SkipReason)

        instance.report_runless_asset_event(dg.AssetMaterialization(["analytics", "anomalies"]))
        result = alerts_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(result, dg.SensorResult)
        [request] = result.run_requests
        assert request.tags["llmhub/alert_sources"] == "analytics/anomalies"

        # Same cursor, nothing new: no second run.
        again = alerts_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
        assert isinstance(again, dg.SkipReason)

        instance.report_runless_asset_event(
            dg.AssetMaterialization(["analytics", "budget_projections"])
        )
        later = alerts_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
        assert isinstance(later, dg.SensorResult)
        assert later.run_requests[0].run_key != request.run_key
        assert later.run_requests[0].tags["llmhub/alert_sources"] == "analytics/budget_projections"
