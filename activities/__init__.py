"""Provider plugins and the shared action pipeline (side-effect free on import)."""
