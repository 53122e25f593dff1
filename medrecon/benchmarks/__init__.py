"""Benchmark commands (`medrecon bench ...`): speed and quality tables for docs/benchmarks.md."""
