"""Evaluation of the hub's models against public benchmarks.

Import the module you need (``ml.evaluation.nab`` for the anomaly detectors on the Numenta
Anomaly Benchmark); nothing is imported eagerly so one benchmark's dependencies never load for
another.
"""
