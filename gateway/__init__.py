"""HTTP gateway: provider webhooks to signals, OAuth flows, admin API, codec endpoint."""
