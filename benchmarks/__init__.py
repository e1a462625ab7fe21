"""Tools outside the runtime package: the benchmark (`python -m benchmarks.bench`)."""
