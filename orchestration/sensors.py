"""Sensors of the hub."""

import json

import dagster as dg

from assets.alerts import ALERT_SOURCE_KEYS
from orchestration.jobs import alerts_job


@dg.sensor(
    name="alerts_sensor",
    job=alerts_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def alerts_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """Evaluate and send alerts within a minute of an alert source materialising (incidents,
    anomalies, budget projections, SLO burn rates): the cursor keeps each source's last storage
    id seen."""
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    changed: dict[str, int] = {}
    for key in ALERT_SOURCE_KEYS:
        records = context.instance.fetch_materializations(key, limit=1).records
        name = key.to_user_string()
        if records and records[0].storage_id > seen.get(name, -1):
            changed[name] = records[0].storage_id
    if not changed:
        return dg.SkipReason("no alert source materialised since the last evaluation")
    cursor = {**seen, **changed}
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key="alerts-" + "-".join(f"{v}" for _, v in sorted(cursor.items())),
                tags={"llmhub/alert_sources": ",".join(sorted(changed))},
            )
        ],
        cursor=json.dumps(cursor, sort_keys=True),
    )
