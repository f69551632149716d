"""Migration revisions, applied in order."""
