"""Splitting claimed partitions into lanes of about equal backlog, and adding up lane reports."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from llmhub.ingest.engine import IngestReport, balance_lanes
from llmhub.ingest.reader import TopicPartition


def _tp(partition: int, topic: str = "llm.telemetry") -> TopicPartition:
    return TopicPartition(topic, partition)


def test_a_skewed_topic_is_split_by_backlog_not_by_partition_number() -> None:
    # The benchmark's keyed topic: partitions 0 and 2 hold 96% of the messages, so splitting
    # by partition number (0, 2 | 1, 3) would leave one lane with nothing to do.
    backlog = {_tp(0): 197_254, _tp(1): 13_285, _tp(2): 280_963, _tp(3): 8_485}

    lanes = balance_lanes(backlog, 2)

    assert lanes == [[_tp(2)], [_tp(0), _tp(1), _tp(3)]]


def test_more_lanes_than_partitions_gives_one_lane_per_partition() -> None:
    backlog = {_tp(0): 5, _tp(1): 0}

    assert balance_lanes(backlog, 4) == [[_tp(0)], [_tp(1)]]
    assert balance_lanes(backlog, 1) == [[_tp(0), _tp(1)]]


@given(
    st.dictionaries(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 11)),
        st.integers(0, 10**6),
        min_size=1,
    ),
    st.integers(1, 6),
)
def test_every_partition_is_in_exactly_one_lane_and_the_lanes_are_balanced(
    raw: dict[tuple[str, int], int], count: int
) -> None:
    backlog = {_tp(p, t): n for (t, p), n in raw.items()}

    lanes = balance_lanes(backlog, count)

    assert sorted(tp for lane in lanes for tp in lane) == sorted(backlog)
    assert len(lanes) == min(count, len(backlog))
    loads = [sum(backlog[tp] for tp in lane) for lane in lanes]
    # Greedy largest-first: no lane exceeds the lightest by more than one partition's backlog.
    assert max(loads) - min(loads) <= max(backlog.values())


def test_lane_reports_add_up_to_the_run_report() -> None:
    first, second = IngestReport(messages=3, batches=1), IngestReport(messages=5, batches=2)
    first.rows_written = {"llm_requests": 3}
    second.rows_written = {"llm_requests": 4, "cost_records": 1}
    second.dead_letter_classes = {("llm.telemetry", "schema"): 1}
    first.add_stage("copy", 1.5)
    second.add_stage("copy", 2.0)
    first.lag, second.lag = {"t[0]": 0}, {"t[1]": 2}
    run = IngestReport(partitions=["t[0]", "t[1]"])

    run.absorb(first)
    run.absorb(second)

    assert (run.messages, run.batches) == (8, 3)
    assert run.rows_written == {"llm_requests": 7, "cost_records": 1}
    assert run.dead_letter_classes == {("llm.telemetry", "schema"): 1}
    assert run.stage_s["copy"] == 3.5
    assert run.lag == {"t[0]": 0, "t[1]": 2}
    assert run.partitions == ["t[0]", "t[1]"]
