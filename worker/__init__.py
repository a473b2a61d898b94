"""Worker process, settings and the Temporal client factory."""
