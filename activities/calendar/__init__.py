"""Provider-neutral calendar core: event model, time zones, recurrence and availability shared by both providers."""
