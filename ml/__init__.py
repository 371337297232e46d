"""Plain-Python ML for the hub: DataFrames in, dataclasses out; no Dagster, no database access.

Anomaly detectors, forecasters and budget projection land here with the ML milestone.
"""
