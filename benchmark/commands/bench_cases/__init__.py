"""`atbench bench` cases, one module per kind; each registers its cases in `BENCH_CASES`."""
