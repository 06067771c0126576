"""Benchmarks and load tests of the function.

``python -m bench`` measures speed stage by stage (see bench/README.md); the load and soak tests run as
``python -m bench.<module>``.
"""
