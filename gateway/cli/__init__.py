"""Command-line interface of tiergate (the `tiergate` console script)."""
