"""Load benchmarks: the service against bare baselines measured in the same run."""
