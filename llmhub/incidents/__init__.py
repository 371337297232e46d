"""Incidents: reading the correlation engine's inputs from the hub and storing its output.

The algorithm is ``ml.correlation``; this package holds the SQL (``store``) and the text
rendering (``report``) that the Dagster asset, the CLI and the demo share.
"""
