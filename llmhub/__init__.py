"""LLM Analytics Hub: the domain core shared by the CLI, the Dagster assets and the benchmarks."""

__version__ = "0.1.0"
