"""The demo's traffic seed: the same on every fresh install, new for every later demo."""

from __future__ import annotations

import dagster as dg

from llmhub.demo import DEMO_SEED, DEMO_TAGS, demo_seed


@dg.op
def _noop() -> None:
    return None


@dg.job
def _ingestion() -> None:
    _noop()


def test_a_fresh_instance_draws_the_fixed_seed_and_each_later_demo_a_new_one() -> None:
    # The demo drew its seed from the clock: two fresh installs saw different weeks, and the
    # detector gate's verdict changed between them.
    with dg.DagsterInstance.ephemeral() as instance:
        assert demo_seed(instance) == DEMO_SEED
        _ingestion.execute_in_process(instance=instance, tags={"other": "run"})
        assert demo_seed(instance) == DEMO_SEED  # only the demo's own runs count
        seeds = {demo_seed(instance)}
        for _ in range(2):
            _ingestion.execute_in_process(instance=instance, tags=DEMO_TAGS)
            seeds.add(demo_seed(instance))
        assert len(seeds) == 3
        assert min(seeds) == DEMO_SEED
