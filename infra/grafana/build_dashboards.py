"""Grafana dashboards as code: a small spec per dashboard, rendered to JSON under dashboards/.

    python infra/grafana/build_dashboards.py           # rewrite the JSON files
    python infra/grafana/build_dashboards.py --check   # exit 1 if a file is stale

tests/unit/test_grafana.py regenerates and compares, and checks that every query names only
metrics the ingester exports (llmhub.ingest.metrics.METRIC_NAMES). The JSON is what Grafana's
file provisioning (provisioning/dashboards.yml) or its import dialog loads; the datasource is a
dashboard variable, so the same file works against any Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "dashboards"
SCHEMA_VERSION = 39
GRID_WIDTH = 24
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 12
    height: int = 8
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = ("llmhub",)
    refresh: str = "30s"
    time_from: str = "now-6h"
    variables: tuple[tuple[str, str], ...] = field(default=())  # (name, label_values query)


INGESTION = Dashboard(
    uid="llmhub-ingestion",
    title="LLM Analytics Hub / Ingestion",
    description="Kafka -> TimescaleDB ingestion: throughput, dead letters, lag, batch durations.",
    variables=(("topic", "label_values(llmhub_ingest_records_in_total, topic)"),),
    panels=(
        Panel(
            "Messages read / s",
            (Query('sum(rate(llmhub_ingest_records_in_total{topic=~"$topic"}[5m]))', "read"),),
            unit="ops",
            kind="stat",
            width=6,
            height=4,
        ),
        Panel(
            "Rows written / s (last batch)",
            (Query("max(llmhub_ingest_rows_per_second)", "rows/s"),),
            unit="ops",
            kind="stat",
            width=6,
            height=4,
        ),
        Panel(
            "Consumer lag",
            (
                Query(
                    "sum(max by (topic, partition) "
                    '(llmhub_ingest_consumer_lag_messages{topic=~"$topic"}))',
                    "lag",
                ),
            ),
            kind="stat",
            width=6,
            height=4,
        ),
        Panel(
            "Since the last finished run",
            (Query("time() - max(llmhub_ingest_last_run_timestamp_seconds)", "age"),),
            unit="s",
            kind="stat",
            width=6,
            height=4,
        ),
        Panel(
            "Records in per topic / s",
            (
                Query(
                    'sum by (topic) (rate(llmhub_ingest_records_in_total{topic=~"$topic"}[5m]))',
                    "{{topic}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Rows out per table / s",
            (
                Query(
                    'sum by (table) (rate(llmhub_ingest_records_out_total{topic=~"$topic"}[5m]))',
                    "{{table}} inserted",
                ),
                Query(
                    "sum by (table) "
                    '(rate(llmhub_ingest_duplicates_skipped_total{topic=~"$topic"}[5m]))',
                    "{{table}} duplicates",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Dead letters per class / s",
            (
                Query(
                    "sum by (topic, error_class) "
                    '(rate(llmhub_ingest_dead_letters_total{topic=~"$topic"}[5m]))',
                    "{{topic}} {{error_class}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Dead-letter rate",
            (
                Query(
                    'sum by (topic) (rate(llmhub_ingest_dead_letters_total{topic=~"$topic"}[10m]))'
                    " / sum by (topic) "
                    '(rate(llmhub_ingest_records_in_total{topic=~"$topic"}[10m]))',
                    "{{topic}}",
                ),
            ),
            unit="percentunit",
            description="Alert IngestDeadLetterRateHigh fires above 5% for 5 minutes.",
        ),
        Panel(
            "Consumer lag per partition",
            (
                Query(
                    "max by (topic, partition) "
                    '(llmhub_ingest_consumer_lag_messages{topic=~"$topic"})',
                    "{{topic}}[{{partition}}]",
                ),
            ),
            description="Messages left unread at the end of the last run.",
        ),
        Panel(
            "Batch duration",
            tuple(
                Query(
                    f"histogram_quantile({q}, "
                    "sum by (le) (rate(llmhub_ingest_batch_duration_seconds_bucket[5m])))",
                    f"p{round(q * 100)}",
                )
                for q in (0.5, 0.95, 0.99)
            ),
            unit="s",
        ),
        Panel(
            "Batches / min",
            (Query("sum(rate(llmhub_ingest_batch_duration_seconds_count[5m])) * 60", "batches"),),
        ),
        Panel(
            "Runs / min",
            (Query("sum(rate(llmhub_ingest_runs_total[5m])) * 60", "runs"),),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (INGESTION,)


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    body: dict = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": query.expr,
                "legendFormat": query.legend,
            }
            for i, query in enumerate(panel.queries)
        ],
    }
    if panel.description:
        body["description"] = panel.description
    if panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "graphMode": "area"}
    else:
        body["options"] = {"legend": {"displayMode": "table", "placement": "bottom"}}
    return body


def render(dashboard: Dashboard) -> dict:
    """The Grafana dashboard model: panels laid out left to right, wrapping at 24 columns."""
    panels, x, y, row_height = [], 0, 0, 0
    for panel_id, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel_json(panel, panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    variables: list[dict] = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        }
    ]
    for name, query in dashboard.variables:
        variables.append(
            {
                "name": name,
                "type": "query",
                "datasource": DATASOURCE,
                "query": {"query": query, "refId": "variable"},
                "definition": query,
                "includeAll": True,
                "allValue": ".*",
                "multi": True,
                "current": {"text": "All", "value": "$__all"},
                "refresh": 2,
                "hide": 0,
            }
        )
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "timezone": "utc",
        "editable": True,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": dashboard.refresh,
        "time": {"from": dashboard.time_from, "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "panels": panels,
    }


def files() -> dict[Path, str]:
    """Each dashboard's path and its JSON text, as the generator writes it."""
    return {
        OUT_DIR / f"{d.uid}.json": json.dumps(render(d), indent=2, sort_keys=True) + "\n"
        for d in DASHBOARDS
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = parser.parse_args(argv)
    stale = [p for p, text in files().items() if not p.exists() or p.read_text() != text]
    if args.check:
        for path in stale:
            sys.stderr.write(f"stale: {path}\n")
        return 1 if stale else 0
    OUT_DIR.mkdir(exist_ok=True)
    for path, text in files().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
