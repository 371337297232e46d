"""Typed resources: the only place the Dagster code location builds clients."""

from assets.resources.hub import HubResource

__all__ = ["HubResource"]
