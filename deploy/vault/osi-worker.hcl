# Policy of the Temporal worker processes (AppRole `osi-worker`).
# Least privilege: what the activities do, nothing else. Token renew/lookup-self come from the
# built-in `default` policy, which AppRole tokens keep.
# The mount names (`secret/`, `transit/`) and the payload key (`osi-payloads`) are the defaults of
# OSI_VAULT_KV_MOUNT / OSI_VAULT_TRANSIT_MOUNT / OSI_VAULT_TRANSIT_KEY; change both together.

# Connection credentials: read them, write refreshed OAuth tokens back (check-and-set writes need
# create+update), store a WhatsApp number's two-step PIN under the connection's path.
# No delete: removing a connection is an administrator's act (gateway admin API or the CLI).
path "secret/data/osi/connections/*" {
  capabilities = ["create", "read", "update"]
}

# Alert routes: the signing secret of a webhook route, read to sign each delivery.
path "secret/data/osi/alerts/*" {
  capabilities = ["read"]
}

# Event subscriptions: the signing secret of each, read to sign every delivery.
path "secret/data/osi/events/*" {
  capabilities = ["read"]
}

# The key that hashes customers out of WhatsApp conversation workflow ids (made once, never changed).
path "secret/data/osi/apps/whatsapp-conversation-ids" {
  capabilities = ["create", "read"]
}

# Provider applications (OAuth client id/secret) used to refresh user tokens.
path "secret/data/osi/apps/*" {
  capabilities = ["read"]
}

# Payload codec: a data key per process (datakey), unwrapping keys of payloads written by others
# (decrypt). Encrypt is allowed for small values encrypted directly with the payload key.
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
