"""Benchmarks and the synthetic corpora they (and the quality tests) run on."""
