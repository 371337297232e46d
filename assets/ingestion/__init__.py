"""Ingestion group: Kafka topics -> raw hypertables, their checks, and retention."""

from assets.ingestion.freshness import RAW_FRESHNESS_CHECKS
from assets.ingestion.raw_tables import kafka_ingestion
from assets.ingestion.retention import retention_runs

__all__ = ["RAW_FRESHNESS_CHECKS", "kafka_ingestion", "retention_runs"]
