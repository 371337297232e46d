"""Jobs select assets by key or group, never by importing asset functions."""

import dagster as dg

ingestion_job = dg.define_asset_job(
    "ingestion_job",
    selection=dg.AssetSelection.groups("ingestion")
    - dg.AssetSelection.assets(["raw", "retention_runs"]),
    description="One bounded Kafka micro-batch into the raw hypertables, with its checks.",
    # Matched by the run queue's tag_concurrency_limits in infra/local/dagster.yaml.
    tags={"llmhub/queue": "ingestion"},
)
retention_job = dg.define_asset_job(
    "retention_job",
    selection=dg.AssetSelection.assets(["raw", "retention_runs"]),
    description="Drop raw chunks past each table's retention window.",
)
