# Policy of the HTTP gateway (AppRole `osi-gateway`): webhooks, OAuth install callbacks, the admin API
# and the Temporal codec endpoint. Token renew/lookup-self come from the built-in `default` policy.
# Mount and key names are the defaults of OSI_VAULT_KV_MOUNT / OSI_VAULT_TRANSIT_MOUNT /
# OSI_VAULT_TRANSIT_KEY; change both together.

# Connection secrets: read for webhook signature verification (WhatsApp app secret); create for
# tokens installed through an OAuth callback and connections added through the admin API; update for
# rotation (check-and-set).
path "secret/data/osi/connections/*" {
  capabilities = ["create", "read", "update"]
}
# The admin API removes a connection with all its secret versions (KV v2 metadata delete).
path "secret/metadata/osi/connections/*" {
  capabilities = ["delete"]
}

# Alert routes managed through the admin API: a webhook route's signing secret is created with the
# route and destroyed with it.
path "secret/data/osi/alerts/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/osi/alerts/*" {
  capabilities = ["delete"]
}

# Event subscriptions managed through the admin API: a subscription's signing secret is created with it,
# replaced on rotation and destroyed with it.
path "secret/data/osi/events/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/osi/events/*" {
  capabilities = ["delete"]
}

# The key that hashes customers out of WhatsApp conversation workflow ids: made once by whichever process
# needs it first (check-and-set create), never changed.
path "secret/data/osi/apps/whatsapp-conversation-ids" {
  capabilities = ["create", "read"]
}

# Provider applications: the OAuth client (install links and code exchange) and signing secrets
# (Slack request verification). Read only: operators store them with the CLI.
path "secret/data/osi/apps/*" {
  capabilities = ["read"]
}

# Codec endpoint for the Temporal Web UI: decode (decrypt) and encode payloads.
path "transit/datakey/plaintext/osi-payloads" {
  capabilities = ["update"]
}
path "transit/encrypt/osi-payloads" {
  capabilities = ["update"]
}
path "transit/decrypt/osi-payloads" {
  capabilities = ["update"]
}

# Keys the service generates for itself on first use (audit-chain HMAC, connect-link signing): create
# (only when absent: check-and-set on version 0) and read; never update, so nobody swaps a key in place.
path "secret/data/osi/keys/*" {
  capabilities = ["create", "read"]
}
