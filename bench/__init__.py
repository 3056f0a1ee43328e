"""Benchmarks for tidemq and the peers it is compared against."""
