"""Synthetic LLM traffic for demos, tests and benchmarks, with injected incidents as ground truth.

``generate`` plans a window of traffic (tenants, applications, models, the per-minute arrival
counts and the incidents) and returns a ``SyntheticTraffic`` whose ``iter_messages`` produces the
events of all five families one hour of event time at a time, so ten million events never sit in
memory. Everything random is drawn from numpy generators seeded with ``(seed, stream, hour)``:
the same seed gives byte-identical messages, however the stream is consumed.

The per-request model (tokens, latency, time to first token, cost) is public so that the trace
replays in ``llmhub.producers.replay`` fill what a trace lacks with the same numbers.

Modules: ``catalog`` (models, prices, tenant and application kinds, alert and policy types),
``requests`` (the per-request model), ``plan`` (the traffic plan and its incidents), ``hours``
(one hour of events of every family), ``traffic`` (``generate``, ``SyntheticTraffic``).
"""

from llmhub.producers.synthetic.plan import Incident
from llmhub.producers.synthetic.traffic import SyntheticTraffic, generate

__all__ = ["Incident", "SyntheticTraffic", "generate"]
