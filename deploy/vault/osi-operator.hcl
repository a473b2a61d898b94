# Policy for operators using the `osi` CLI (connections, provider apps, alert routes). Attach it to a
# human login (OIDC, userpass, LDAP) or a short-lived token: `bao token create -policy=osi-operator -ttl=1h`.
# It cannot change policies, auth methods or mounts, nor read the transit key itself.

path "secret/data/osi/*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "secret/metadata/osi/*" {
  capabilities = ["read", "list", "delete"]
}
# Undelete/destroy individual versions after a mistaken rotation.
path "secret/undelete/osi/*" {
  capabilities = ["update"]
}
path "secret/destroy/osi/*" {
  capabilities = ["update"]
}

# Payload codec (the CLI decodes workflow results) and rotation of the payload key; old versions
# stay usable for decryption.
path "transit/datakey/plaintext/osi-payloads" {
  capabilities = ["update"]
}
path "transit/encrypt/osi-payloads" {
  capabilities = ["update"]
}
path "transit/decrypt/osi-payloads" {
  capabilities = ["update"]
}
path "transit/keys/osi-payloads/rotate" {
  capabilities = ["update"]
}
path "transit/keys/osi-payloads" {
  capabilities = ["read"]
}

# Issue a fresh AppRole secret id for a worker or gateway (rotation without the root token).
path "auth/approle/role/osi-worker/secret-id" {
  capabilities = ["update"]
}
path "auth/approle/role/osi-gateway/secret-id" {
  capabilities = ["update"]
}
