"""Benchmarks: figures only, printed and written to bench/RESULTS.md (`make bench` runs bench.run_all)."""
