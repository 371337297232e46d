"""The garbage collector's settings during ingestion runs, and after them."""

from __future__ import annotations

import gc

import pytest

from llmhub.ingest import engine


def test_runs_raise_the_threshold_and_the_last_one_to_end_restores_it() -> None:
    before = gc.get_threshold()
    first, second = engine._fewer_collections(), engine._fewer_collections()

    first.__enter__()
    assert gc.get_threshold() == engine.GC_THRESHOLD
    assert gc.get_freeze_count() > 0
    second.__enter__()  # a second run of the same process (another thread)
    first.__exit__(None, None, None)
    # Regression guard: the first run to end must not restore the defaults under the other.
    assert gc.get_threshold() == engine.GC_THRESHOLD
    second.__exit__(None, None, None)

    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_failing_run_restores_the_settings() -> None:
    before = gc.get_threshold()

    with pytest.raises(RuntimeError), engine._fewer_collections():
        raise RuntimeError("the run failed")

    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
