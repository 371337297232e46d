"""The hub's database and broker, as one resource (ingestion needs both in one transaction)."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg
import psycopg
from pydantic import Field

from llmhub.config import Settings, load_settings
from llmhub.db import connect


class HubResource(dg.ConfigurableResource):
    """Connection settings for TimescaleDB and Kafka; everything else comes from ``LLMHUB_*``.

    ``database_url`` may hold a password: pass it as ``dg.EnvVar`` so Dagit never shows it.
    """

    database_url: str = Field(description="PostgreSQL/TimescaleDB URL of the hub database.")
    kafka_bootstrap: str = Field(description="Kafka bootstrap servers, comma-separated.")
    topic_prefix: str = Field("", description="Prepended to every contract topic name.")
    consumer_group: str = Field("llmhub-ingest", description="Owner of the stored offsets.")

    def settings(self) -> Settings:
        return replace(
            load_settings(),
            database_url=self.database_url,
            kafka_bootstrap=self.kafka_bootstrap,
            topic_prefix=self.topic_prefix,
            consumer_group=self.consumer_group,
        )

    def connect(self) -> psycopg.Connection:
        return connect(self.settings(), autocommit=True)
