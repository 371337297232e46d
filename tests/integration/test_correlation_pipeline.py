"""``llmhub ml eval-correlation --mode pipeline`` on one short seed: the scenario world through
Kafka, the ingester, the dbt job, the detector and the incidents pass, graded by its ground truth.

Four days (three clean, then the scenario day) at 4,000 requests an hour (about 375k messages)
and the stand-in detector, so the run takes minutes; the measured runs use eight days and the
detector fleet (README, issue 10).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from integration.conftest import TEST_DATABASE
from llmhub.config import Settings, with_database
from llmhub.incidents.pipeline_eval import PipelineSeed, run_seed

DATABASE = f"{TEST_DATABASE}_pipeline"
#: Scenarios whose cause the engine must name first whatever the volume: one registry change or
#: one attacked application with large effects on its own series.
CLEAR = ("model_rollout", "prompt_change", "jailbreak_campaign", "unrelated")


@pytest.fixture(scope="module")
def run(test_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> PipelineSeed:
    return run_seed(
        test_settings,
        0,
        DATABASE,
        days=4,
        requests_per_hour=4_000,
        detector="stand-in",
        workdir=Path(tmp_path_factory.mktemp("pipeline")),
    )


def test_clear_scenarios_get_their_root_cause_first(run: PipelineSeed) -> None:
    clear = [o for o in run.pipeline.outcomes if o.kind in CLEAR]
    assert len(clear) == 5
    assert {o.scenario_id: o.rank for o in clear} == {o.scenario_id: 1 for o in clear}


def test_no_incident_for_what_must_not_open_one(run: PipelineSeed) -> None:
    expected_spike = [o for o in run.pipeline.outcomes if o.kind == "expected_spike"]
    assert expected_spike and all(o.incident_id is None for o in expected_spike)


def test_every_message_is_ingested_and_the_mart_gives_back_the_series(run: PipelineSeed) -> None:
    rows = run.counts["rows_written"]
    assert sum(rows.values()) + sum(run.counts["dead_lettered"].values()) == run.counts["messages"]
    fidelity = run.counts["mart_vs_generated"]
    assert fidelity["route_hours_only_generated"] == fidelity["route_hours_only_in_mart"] == 0
    assert fidelity["request_count"]["max_rel"] == 0
    assert fidelity["error_rate"]["max_rel"] < 1e-9
    assert fidelity["tokens"]["median_rel"] < 0.01
    assert fidelity["cost_usd"]["median_rel"] < 0.01
    # Sampled per request: the hour's p95 of a dozen to a few hundred latencies.
    assert fidelity["latency_p95_ms"]["median_rel"] < 0.15


def test_the_policy_change_is_stored_and_names_its_compliance_cascade(run: PipelineSeed) -> None:
    # The contract once knew models, prompts and applications only: the cascade's cause (an
    # asset of kind "policy") was dead-lettered and the cascade had no root cause.
    assert sum(run.counts["dead_lettered"].values()) == 0
    cascade = [o for o in run.pipeline.outcomes if o.kind == "compliance_cascade"]
    assert cascade and all(o.rank == 1 for o in cascade)


def test_the_database_is_dropped_afterwards(run: PipelineSeed, test_settings: Settings) -> None:
    admin = with_database(test_settings.database_url, "postgres")
    with psycopg.connect(admin) as conn:
        left = conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchall()
    assert left == []
