"""The ML assets against the real stack: a fresh database, the MLflow server, the registry gate.

A synthetic hourly request mart and daily cost mart are written straight into the fresh database
(the marts' columns the models read, not the whole dbt model), so the test exercises training,
registration, promotion and publishing without a Kafka round trip. Experiments and registered
models get a per-run prefix and are deleted afterwards.
"""

import json
import os
import re
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
import psycopg
import pytest
from mlflow import MlflowClient
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from psycopg import sql

from assets.ml_models import DETECTOR_METRICS, anomaly_detector, request_rate_forecaster
from assets.ml_models.detector import DetectorConfig
from assets.ml_models.forecaster import ForecasterConfig
from assets.publish import anomalies, budget_projections, forecasts
from assets.publish.anomalies import AnomalyScoresConfig
from assets.publish.forecasts import ForecastsConfig
from assets.resources import HubResource
from assets.resources.mlflow import MlflowResource
from llmhub.config import Settings, load_settings, mlflow_tracking_uri, redact, with_database
from llmhub.db import migrate
from ml.pyfunc import DetectorModel, ForecasterModel, digests_from_tags

pytestmark = pytest.mark.integration

TRACKING_URI = mlflow_tracking_uri()
TENANTS = ("acme", "globex", "initech")
HOURS = 24 * 21
END = datetime(2026, 11, 20, 23, tzinfo=UTC)
SPIKED = ("acme", "chat", "gpt-4o", "request_count")


def _unreachable(problem: str) -> None:
    if os.environ.get("LLMHUB_REQUIRE_STACK") == "1":
        pytest.fail(f"{problem} (LLMHUB_REQUIRE_STACK=1)", pytrace=False)
    pytest.skip(problem)


def _create_marts(conn: psycopg.Connection) -> None:
    """The mart columns the models read, filled with daily-seasonal noisy series."""
    conn.execute("create schema if not exists marts")
    conn.execute(
        "create table marts.fct_llm_requests_hourly (tenant_id text, asset_id text, "
        "request_model text, request_hour_at timestamptz, request_count bigint, "
        "error_count bigint, input_tokens bigint, output_tokens bigint, cost_usd numeric, "
        "paid_request_count bigint, cost_log_sum numeric, latency_log_count bigint, "
        "latency_log_sum numeric, time_to_first_token_log_count bigint, "
        "time_to_first_token_log_sum numeric, "
        "latency_p95_ms double precision, time_to_first_token_p95_ms double precision)"
    )
    conn.execute(
        "create table marts.fct_llm_cost_daily (tenant_id text, asset_id text, "
        "usage_date date, cost_usd numeric)"
    )
    rng = np.random.default_rng(7)
    # The billed requests' mean log cost: lognormal request costs (sigma 0.65) around 0.002 USD.
    log_costs = np.random.default_rng(8)
    hours = [END - timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]
    rows = []
    for n, tenant in enumerate(TENANTS):
        base = 200.0 / (n + 1)
        for i, at in enumerate(hours):
            level = base * (1 + 0.6 * np.sin(2 * np.pi * (at.hour - 6) / 24))
            count = int(rng.poisson(level))
            if tenant == SPIKED[0] and i == HOURS - 1:
                # A spike in the newest hour, marked false positive by an analyst below.
                count = int(level * 10) + 500
            paid = count - count // 50
            mean_log = np.log(0.002) + log_costs.normal(0.0, 0.65 / np.sqrt(max(paid, 1)))
            rows.append(
                (
                    tenant,
                    "chat",
                    "gpt-4o",
                    at,
                    count,
                    count // 50,
                    count * 300,
                    count * 120,
                    round(count * 0.002, 6),
                    paid,
                    round(float(paid * mean_log), 9),
                    paid,
                    round(float(paid * np.log(900.0)), 9),
                    paid,
                    round(float(paid * np.log(300.0)), 9),
                    900.0,
                    300.0,
                )
            )
    with conn.cursor() as cur:
        cur.executemany(
            "insert into marts.fct_llm_requests_hourly values "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
        cur.execute(
            "insert into marts.fct_llm_cost_daily "
            "select tenant_id, asset_id, (request_hour_at at time zone 'UTC')::date, "
            "sum(cost_usd) from marts.fct_llm_requests_hourly group by 1, 2, 3"
        )
        cur.execute(
            "insert into analytics.budgets (tenant_id, monthly_budget_usd) values ('acme', 50)"
        )
        cur.execute(
            "insert into analytics.anomaly_feedback "
            "(bucket_at, tenant_id, asset_id, request_model, metric, verdict) "
            "values (%s, %s, %s, %s, %s, 'false_positive')",
            (END, *SPIKED),
        )


@dataclass
class MlStack:
    settings: Settings
    conn: psycopg.Connection
    prefix: str
    client: MlflowClient

    def resources(self) -> dict[str, object]:
        return {
            "hub": HubResource(
                database_url=self.settings.database_url,
                kafka_bootstrap=self.settings.kafka_bootstrap,
            ),
            "mlflow_tracking": MlflowResource(tracking_uri=TRACKING_URI),
        }

    @property
    def forecaster_name(self) -> str:
        return f"{self.prefix}-forecaster"

    @property
    def detector_name(self) -> str:
        return f"{self.prefix}-detector"


@pytest.fixture
def ml_stack() -> Iterator[MlStack]:
    settings = load_settings()
    try:
        with psycopg.connect(settings.database_url, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        _unreachable(f"TimescaleDB at {redact(settings.database_url)} unreachable ({exc})")
    try:
        with urllib.request.urlopen(f"{TRACKING_URI}/health", timeout=3):
            pass
    except OSError as exc:
        _unreachable(f"MLflow at {TRACKING_URI} unreachable ({exc})")
    prefix = f"llmhub-test-{uuid.uuid4().hex[:8]}"
    name = prefix.replace("-", "_")
    admin_url = with_database(settings.database_url, "postgres")
    drop = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    client = MlflowClient(tracking_uri=TRACKING_URI, registry_uri=TRACKING_URI)
    mlflow.set_tracking_uri(TRACKING_URI)
    try:
        test = replace(settings, database_url=with_database(settings.database_url, name))
        migrate(test)
        with psycopg.connect(test.database_url, autocommit=True) as conn:
            _create_marts(conn)
            yield MlStack(test, conn, prefix, client)
    finally:
        for model in client.search_registered_models(f"name LIKE '{prefix}%'"):
            client.delete_registered_model(model.name)
        for experiment in client.search_experiments(filter_string=f"name LIKE '{prefix}%'"):
            client.delete_experiment(experiment.experiment_id)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(drop)


def _check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def _materialize(stack: MlStack, asset: dg.AssetsDefinition, config: dg.Config):
    op = asset.op.name
    return dg.materialize(
        [asset], resources=stack.resources(), run_config=dg.RunConfig(ops={op: config})
    )


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


#: Module paths of the project: none may appear in a registered model's data files.
PROJECT_MODULES = (b"ml.anomaly", b"ml.forecast", b"ml.pyfunc", b"assets.", b"llmhub.")
ENTRY_SCRIPTS = {"detector_code.py", "forecaster_code.py"}


def _registered_files(stack: MlStack, name: str, version: str) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp))
        return {
            p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()
        }


def test_train_gate_and_publish(ml_stack: MlStack) -> None:
    forecaster = ForecasterConfig(
        experiment=f"{ml_stack.prefix}/forecaster",
        registered_model_name=ml_stack.forecaster_name,
        max_series=2,
        n_origins=1,
    )
    first = _materialize(ml_stack, request_rate_forecaster, forecaster)
    assert _check(first).passed, _check(first).description
    meta = _metadata(first)
    champion = ml_stack.client.get_model_version_by_alias(ml_stack.forecaster_name, "champion")
    # A fresh install always gets a champion: the best candidate, the seasonal naive included.
    assert champion.version == meta["model_version"] == "1"
    assert meta["winner"] in {"baseline", "candidate"}
    if meta["winner"] == "candidate":
        assert meta["candidate_mase"] < meta["baseline_mase"]
    run = ml_stack.client.get_run(meta["mlflow_run_id"])
    assert run.data.tags["gate.winner"] == meta["winner"]
    assert run.data.tags["gate.reason"] == _check(first).description
    # Every file of the version has its SHA-256 on it.
    files = _registered_files(ml_stack, ml_stack.forecaster_name, "1")
    digests = digests_from_tags(champion.tags)
    assert set(digests) == set(files) - {"registered_model_meta"}
    assert "forecaster_code.py" in files and "MLmodel" in files
    # MLflow's own loader runs the models-from-code entry script: no pickle anywhere.
    champion_model = mlflow.pyfunc.load_model(f"models:/{ml_stack.forecaster_name}@champion")
    history = pd.DataFrame(
        {
            "series_id": "s",
            "ds": pd.date_range("2026-11-01", periods=24 * 7, freq="h"),
            "y": 100 + 50 * np.sin(np.arange(24 * 7) * 2 * np.pi / 24),
        }
    )
    predicted = champion_model.predict(history, params={"horizon": 12})
    assert len(predicted) == 12
    assert (predicted["yhat_lower"] <= predicted["yhat"]).all()
    verified, _ = ml_stack.resources()["mlflow_tracking"].load_champion(ml_stack.forecaster_name)
    assert isinstance(verified, ForecasterModel)
    pd.testing.assert_frame_equal(
        verified.predict(None, history, params={"horizon": 12}), predicted
    )

    # The seasonal naive configured alone: one candidate with the baseline, against the
    # champion's configuration. Whichever wins is registered as v2 and becomes champion.
    naive = forecaster.model_copy(update={"members": ["seasonal_naive"]})
    second = _materialize(ml_stack, request_rate_forecaster, naive)
    assert _check(second).passed
    second_meta = _metadata(second)
    assert second_meta["model_version"] == "2"
    assert second_meta["previous_champion_version"] == "1"
    champion = ml_stack.client.get_model_version_by_alias(ml_stack.forecaster_name, "champion")
    assert champion.version == "2"
    run = ml_stack.client.get_run(second_meta["mlflow_run_id"])
    assert run.data.params["candidates"] == (
        "baseline" if meta["winner"] == "baseline" else "baseline,champion"
    )
    # Same data, same commands: the same verdict (the gate is seeded, the backtest exact).
    again = _materialize(ml_stack, request_rate_forecaster, naive)
    assert _metadata(again)["winner"] == second_meta["winner"]
    assert _check(again).description == _check(second).description

    detector = DetectorConfig(
        experiment=f"{ml_stack.prefix}/detector",
        registered_model_name=ml_stack.detector_name,
    )
    trained = _materialize(ml_stack, anomaly_detector, detector)
    evaluation = _check(trained)
    meta = _metadata(trained)
    assert evaluation.passed and trained.success
    assert meta["series"] == len(TENANTS) * len(DETECTOR_METRICS)
    # The shift tests or the ensemble replace the robust baseline only beyond the noise.
    assert meta["winner"] in {"baseline", "baseline_tests", "candidate"}
    run = ml_stack.client.get_run(meta["mlflow_run_id"])
    assert run.data.tags["gate.winner"] == meta["winner"]
    # Same members; beside the shift tests the spike part is only recalibrated (a stricter
    # threshold, a wider range rule), which moves the spike AUC by little, not by a model's worth.
    assert meta["baseline_tests_auc"] == pytest.approx(meta["baseline_auc"], abs=0.01)
    pair = "gate_baseline_tests_vs_baseline_shift_recall"
    advantage = run.data.metrics.get(f"{pair}_advantage")
    noise = run.data.metrics.get(f"{pair}_noise_sd")
    assert advantage is not None and noise is not None
    assert advantage == pytest.approx(
        meta["baseline_tests_shift_recall"] - meta["baseline_shift_recall"]
    )
    if meta["winner"] == "baseline":
        assert advantage <= 2 * noise or "over budget" in run.data.tags["gate.reason"]
    files = _registered_files(ml_stack, ml_stack.detector_name, meta["model_version"])
    assert {"artifacts/fleet/fleet.json", "artifacts/fleet/fleet.npz"} <= set(files)
    # No data file names a project module: a refactor cannot break the registered model.
    for path, content in files.items():
        if path.rsplit("/", 1)[-1] not in ENTRY_SCRIPTS:
            assert not any(m in content for m in PROJECT_MODULES), path

    scored = _materialize(
        ml_stack, anomalies, AnomalyScoresConfig(detector_model_name=ml_stack.detector_name)
    )
    scored_meta = _metadata(scored)
    assert scored_meta["rows_written"] == len(TENANTS) * len(DETECTOR_METRICS) * 6
    # The registered fleet scored every series: nothing was fitted at scoring time.
    assert scored_meta["series_scored_by_fitted_model"] == len(TENANTS) * len(DETECTOR_METRICS)
    assert scored_meta["series_fitted_at_scoring"] == 0
    assert scored_meta["suppressed_false_positives"] >= 1
    flagged = ml_stack.conn.execute(
        "select is_anomaly, score, detector from analytics.anomalies where bucket_at = %s and "
        "tenant_id = %s and asset_id = %s and request_model = %s and metric = %s",
        (END, *SPIKED),
    ).fetchone()
    assert flagged is not None and flagged[0] is False and flagged[1] >= 0.5
    assert flagged[2] == run.data.params["model_members"].replace(",", "+")

    # The next training reads the false positive (now scored) and raises that series' threshold.
    retrained = _materialize(ml_stack, anomaly_detector, detector)
    retrained_meta = _metadata(retrained)
    run = ml_stack.client.get_run(retrained_meta["mlflow_run_id"])
    assert run.data.metrics["feedback_series_tuned"] == 1
    assert run.data.metrics["feedback_false_positives_marked"] == 1
    assert run.data.params["thresholds_tuned_by_feedback"] == "1"
    # The champion's configuration is one of the configured ones: evaluated once, as incumbent.
    assert run.data.params["candidates"] == "baseline,baseline_tests,candidate"
    assert retrained_meta["winner"] == meta["winner"]
    assert {a.path for a in ml_stack.client.list_artifacts(run.info.run_id, "plots")} == {
        "plots/anomaly_timeline.png",
        "plots/score_distribution.png",
    }
    loaded, _ = ml_stack.resources()["mlflow_tracking"].load_champion(ml_stack.detector_name)
    assert isinstance(loaded, DetectorModel)
    assert loaded.fleet is not None and len(loaded.fleet) == meta["series"]

    published = _materialize(
        ml_stack,
        forecasts,
        ForecastsConfig(forecaster_model_name=ml_stack.forecaster_name, max_series=2),
    )
    assert _metadata(published)["rows_written"] == 2 * 48
    versions = ml_stack.conn.execute(
        "select distinct model_version from analytics.forecasts"
    ).fetchall()
    assert versions == [("3",)]

    projected = dg.materialize([budget_projections], resources=ml_stack.resources())
    assert _metadata(projected)["rows_written"] == len(TENANTS)
    count = ml_stack.conn.execute("select count(*) from analytics.budget_projections").fetchone()
    assert count == (len(TENANTS),)
    # The daily grain: each tenant's cost over the next 14 days, with intervals.
    daily = ml_stack.conn.execute(
        "select count(*), count(distinct tenant_id), bool_and(yhat_lower <= yhat "
        "and yhat <= yhat_upper) from analytics.forecasts where grain = 'day'"
    ).fetchone()
    assert daily == (len(TENANTS) * 14, len(TENANTS), True)


def test_a_tampered_model_is_refused(ml_stack: MlStack) -> None:
    config = ForecasterConfig(
        experiment=f"{ml_stack.prefix}/forecaster",
        registered_model_name=ml_stack.forecaster_name,
        members=["seasonal_naive"],
        max_series=2,
        n_origins=1,
    )
    assert _materialize(ml_stack, request_rate_forecaster, config).success
    resource = ml_stack.resources()["mlflow_tracking"]
    resource.load_champion(ml_stack.forecaster_name)
    version = ml_stack.client.get_model_version(ml_stack.forecaster_name, "1")
    location = ml_stack.client.get_model_version_download_uri(ml_stack.forecaster_name, "1")
    # Whoever can write to the artifact store swaps the configuration the model loads.
    with tempfile.TemporaryDirectory() as tmp:
        tampered = Path(tmp) / "forecaster.json"
        tampered.write_text(
            json.dumps(
                {
                    "kind": "forecaster",
                    "members": ["prophet"],
                    "season": 24,
                    "weekly_season": 168,
                    "level": 0.5,
                    "horizon": 48,
                }
            )
        )
        get_artifact_repository(location).log_artifact(str(tampered), "artifacts")
    with pytest.raises(dg.Failure, match=re.escape("changed ['artifacts/forecaster.json']")):
        resource.load_champion(ml_stack.forecaster_name)
    published = dg.materialize(
        [forecasts],
        resources=ml_stack.resources(),
        run_config=dg.RunConfig(
            ops={forecasts.op.name: ForecastsConfig(forecaster_model_name=ml_stack.forecaster_name)}
        ),
        raise_on_error=False,
    )
    assert not published.success
    assert ml_stack.conn.execute("select count(*) from analytics.forecasts").fetchone() == (0,)
    # A version whose digests were never recorded is refused as well.
    for key in digests_from_tags(version.tags):
        ml_stack.client.delete_model_version_tag(ml_stack.forecaster_name, "1", f"sha256/{key}")
    with pytest.raises(dg.Failure, match="no SHA-256 digests recorded"):
        resource.load_champion(ml_stack.forecaster_name)


STOPPED = ("globex", "chat", "gpt-4o")
DAYTIME = ("initech", "office", "gpt-4o-mini")


def _add_stop_quiet_route_and_events(conn: psycopg.Connection) -> None:
    """globex's route stops for the newest 4 hours; initech's office route serves 80 requests
    an hour from 09:00 to 17:00 only; acme's security alerts and globex's policy violations
    run at 1-3 an hour and burst in the newest hour."""
    conn.execute(
        "delete from marts.fct_llm_requests_hourly where tenant_id = %s and asset_id = %s "
        "and request_model = %s and request_hour_at > %s",
        (*STOPPED, END - timedelta(hours=4)),
    )
    conn.execute(
        "insert into marts.fct_llm_requests_hourly select %s, %s, %s, h, 80, 1, 24000, 9600, "
        "0.16, 900.0, 300.0 from generate_series(%s::timestamptz, %s, interval '1 hour') h "
        "where extract(hour from h at time zone 'UTC') between 9 and 17",
        (*DAYTIME, END - timedelta(hours=HOURS - 1), END),
    )
    for table, tenant, body in (
        ("security_alerts", "acme", "'prompt_injection', 'sentinel', 'flagged'"),
        ("policy_violations", "globex", "'pol-1', 'pii', 'flagged'"),
    ):
        columns = sql.SQL(
            "alert_type, detector, action_taken"
            if table == "security_alerts"
            else "policy_id, violation_type, action_taken"
        )
        prefix = sql.SQL(
            "insert into raw.{} (event_id, occurred_at, tenant_id, asset_id, event_type, "
            "source_module, severity, schema_version, {}, kafka_partition, kafka_offset) "
        ).format(sql.Identifier(table), columns)
        values = sql.SQL("'event', 'test', 'medium', '1.0', {}, 0, 0").format(sql.SQL(body))
        hourly = sql.SQL(
            "{} select gen_random_uuid(), h + k * interval '7 minutes', %s, 'chat', {} "
            "from generate_series(%s::timestamptz, %s, interval '1 hour') h, "
            "generate_series(1, 8) k "
            "where k <= 1 + (extract(hour from h)::int + extract(day from h)::int) %% 3"
        ).format(prefix, values)
        conn.execute(hourly, (tenant, END - timedelta(hours=HOURS - 1), END))
        # The burst: 60 more events in the newest hour.
        burst = sql.SQL(
            "{} select gen_random_uuid(), %s + k * interval '30 seconds', %s, 'chat', {} "
            "from generate_series(1, 60) k"
        ).format(prefix, values)
        conn.execute(burst, (END, tenant))


def test_stopped_routes_and_security_and_policy_events_are_published(ml_stack: MlStack) -> None:
    _add_stop_quiet_route_and_events(ml_stack.conn)
    detector = DetectorConfig(
        experiment=f"{ml_stack.prefix}/detector",
        registered_model_name=ml_stack.detector_name,
        members=["robust_baseline"],
        metrics=["request_count"],
    )
    assert _materialize(ml_stack, anomaly_detector, detector).success
    config = AnomalyScoresConfig(
        detector_model_name=ml_stack.detector_name, metrics=["request_count"]
    )
    for _ in range(2):
        # Twice: re-scoring replaces the stop rows, it never duplicates them.
        meta = _metadata(_materialize(ml_stack, anomalies, config))
        stops = ml_stack.conn.execute(
            "select tenant_id, asset_id, request_model, bucket_at, observed, is_anomaly, "
            "detector from analytics.anomalies where metric = 'traffic_stop' order by bucket_at"
        ).fetchall()
        # The route that stopped, in each of its 4 silent hours; the daytime route, silent
        # at night as every night, is not flagged.
        assert [row[:3] for row in stops] == [STOPPED] * 4
        assert [row[3] for row in stops] == [END - timedelta(hours=h) for h in (3, 2, 1, 0)]
        assert all(r[4] == 0 and r[5] and r[6] == "count_test" for r in stops)
        assert meta["traffic_stops"] == 4
        assert meta["event_count_series"] == 2
    events = ml_stack.conn.execute(
        "select tenant_id, asset_id, request_model, metric, bool_or(is_anomaly), "
        "bool_or(is_anomaly) filter (where bucket_at < %s), count(*) "
        "from analytics.anomalies where metric in ('security_alerts', 'policy_violations') "
        "group by 1, 2, 3, 4 order by 4",
        (END,),
    ).fetchall()
    # Each application's events scored on their own history: the newest hour's burst is flagged.
    assert events == [
        ("globex", "chat", "*", "policy_violations", True, False, 6),
        ("acme", "chat", "*", "security_alerts", True, False, 6),
    ]
