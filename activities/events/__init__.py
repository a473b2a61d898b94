"""Events to OpenSyte: per-organization subscriptions receiving signed JSON events, delivered durably."""
