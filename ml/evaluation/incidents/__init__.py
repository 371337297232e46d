"""IncidentLabel evaluation: the detector and the forecaster on synthetic traffic with ground truth.

The synthetic generator injects four kinds of incidents (``llmhub.producers.synthetic``): a
model-wide latency regression, a cost spike, an error storm and a security-alert burst on one
application each. This module grades the anomaly detector against them and backtests the
request-rate forecaster on the same traffic. It is pure: request and alert rows in (as ingestion
writes them to ``raw.llm_requests`` / ``raw.security_alerts``), dataclasses out.

Series. ``hourly_requests`` aggregates request rows exactly as the dbt mart
``marts.fct_llm_requests_hourly`` does (``llm_request_metrics``: errors are status ``error``,
rate-limited requests apart; p95 latency and time to first token by ``percentile_cont`` over
successful requests, rounded to 3 decimals), at the (tenant, application, model, hour) grain the
models use. ``build_series`` turns that into one hourly series per route and metric of
``ROUTE_METRICS`` and one security-alert count per application (model ``"*"``).

Matching. An incident's target series are the series it hits: every application calling the
model when the tenant is None, every model of the application when the model is None; a
security burst targets the application's alert series. Its metric maps ``latency_ms`` to
``latency_p95_ms`` and keeps ``cost_usd``, ``error_rate`` and ``security_alerts``. The incident is
detected when a target series flags that metric in an hour overlapping ``[start, end)`` or within
``grace_hours`` after ``end``. In that span, flags on the target series' other metrics are
*explained* (a cost spike also moves tokens; an error storm cuts cost): neither true nor false
positives. Flags in an hour overlapping a background rate-limit burst on the burst's route are
excluded too (background realism, not graded). Every other flag in an active hour is a false
positive; flags in idle hours (see ``ml.features.fill_idle_hours``) never count.

Forecast accuracy. The published forecaster is backtested on the hourly request count from daily
origins at the end of the test window (horizon 24 h; seven origins cover every day of the week
once, so weekday/weekend transitions weigh as much as they do in reality), at two levels: per
tenant (all its routes summed) and per (tenant, application, model) route. The 12% MAPE target is
compared at the TENANT level: capacity and budget planning is per tenant. Route-level figures are
reported too, with the Poisson noise floor (the MAPE even a perfect mean forecast makes on counts
of that size), so that a high MAPE on a route carrying a few requests an hour is read correctly.

Modules: ``base`` (columns, metrics, types), ``ground_truth`` (the injected incidents),
``hourly`` (the mart's hourly aggregation and the scored series), ``detection`` (grading the
detector), ``forecast`` (backtesting the forecaster), ``harness`` (one seed's windows, generated
traffic in, figures out).
"""
