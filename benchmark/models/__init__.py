"""Architectures (`architectures`) and their Lipschitz bounds (`lipschitz`): below the defenses,
which may use both, and the pipeline."""
