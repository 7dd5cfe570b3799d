"""Conventions every layer shares (analysis, drivers, sequences, app): names that must be spelled
once. It imports nothing of ours and nothing outside the standard library; import-linter keeps it
the bottom layer (pyproject.toml)."""
