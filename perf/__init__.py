"""Benchmarks of the sidecar against baselines measured in the same run (issue 6). Run ``perf/run --quick``."""
