"""The one place that decides where configuration comes from in Dagster.

Connection strings may carry credentials, so when they are set in the environment they reach
resources as ``dg.EnvVar`` (resolved at launch, never shown in Dagit). When unset, the local-stack
defaults apply.
"""

from __future__ import annotations

import os

import dagster as dg

from llmhub.config import (
    DEFAULT_DATABASE_URL,
    DEFAULT_KAFKA_BOOTSTRAP,
    DEFAULT_MLFLOW_TRACKING_URI,
)


def env_or_default(name: str, default: str) -> str | dg.EnvVar:
    return dg.EnvVar(name) if os.environ.get(name) else default


def database_url() -> str | dg.EnvVar:
    return env_or_default("LLMHUB_DATABASE_URL", DEFAULT_DATABASE_URL)


def kafka_bootstrap() -> str | dg.EnvVar:
    return env_or_default("LLMHUB_KAFKA_BOOTSTRAP", DEFAULT_KAFKA_BOOTSTRAP)


def mlflow_tracking_uri() -> str | dg.EnvVar:
    return env_or_default("MLFLOW_TRACKING_URI", DEFAULT_MLFLOW_TRACKING_URI)
