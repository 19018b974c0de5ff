"""The lowest layer: errors, the registries, names, atomic I/O, locks, provenance and plugin files.

Imports nothing else of atbench (the layers: `tests/test_layers.py`).
"""
