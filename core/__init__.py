"""The core layer: settings, errors, policies, the action pipeline, limiter, breaker, connections, Temporal."""
