"""The Dagster code location of the hub: glue only (resources, jobs, schedules, Definitions)."""
