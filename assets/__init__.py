"""Dagster asset and asset-check definitions, one subpackage per asset group."""
