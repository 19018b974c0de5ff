"""The top layer: the `atbench` console script and the commands beyond the pipeline (validate,
verify, regress, bench)."""
