"""Correlation engine: from anomalies and events to incidents with a root cause and a price.

Pure Python (pandas in, dataclasses out; no Dagster, no database). One module per correlation
rule of the seed, combined by :func:`ml.correlation.engine.correlate`:

- ``causal``       registry change followed by a change point in the series it touches
- ``temporal``     anomalies that co-occur within a window
- ``patterns``     recurrence of a known incident signature ("seen before")
- ``graph``        grouping over the entity graph tenant -> application -> model -> provider
- ``cost``         excess cost over the forecast upper bound, split volume / tokens / price-mix
- ``security``     bursts of security alerts and policy violations of one application
- ``performance``  latency -> errors/429 -> retry-cost chains, ordered in time
- ``compliance``   one policy change followed by violations across applications

``impact`` holds the impact score, ``suppression`` the forecast-interval suppression and
``lifecycle`` the stable ids and the open/resolved rule.
"""
