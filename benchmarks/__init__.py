"""Benchmark suite: losant_async side by side with raw libraries and the official clients (``python -m benchmarks``)."""
