"""The evaluation's analysis stage: what a record reports beyond accuracies.

`run` is the stage's entry (`probe` before the protocol, `analyse` after it, `sanity_flags` for
`atbench validate`); the other modules are its parts: `margins` and `min_norm` (logit and input
margins), `sanity` and `result_flags` (the sanity flags), `certified` (the certified L2 table)
and `settings` (the protocol's [analysis] table, which `benchmark.pipeline.protocol` reads).
This file imports none of them, so reading a protocol's settings loads no analysis code.
"""
