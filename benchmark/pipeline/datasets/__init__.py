"""Data-set loaders, one module per family; each registers its loaders in `DATASETS` on import."""
