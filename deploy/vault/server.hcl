# OpenBao server of the compose stack: single-node integrated storage (raft) on the `vault-data` volume.
# OpenBao 2.x has no "file" storage backend any more; raft is its supported production storage (also
# with HashiCorp Vault). More nodes: add `retry_join` stanzas (docs/deploy.md "Vault high availability").
storage "raft" {
  path    = "/openbao/file"
  node_id = "osi-vault-1"
  # The production setting (the default, 5, is for development): faster leader election after unseal.
  performance_multiplier = 1
}

# TLS is terminated here in production: replace tls_disable with tls_cert_file / tls_key_file and use
# https:// in OSI_VAULT_ADDR.
listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"
  tls_disable     = true
}

api_addr     = "http://vault:8200"
cluster_addr = "http://vault:8201"
ui           = true

# Production: auto-unseal instead of unseal keys kept by operators, e.g. a transit seal backed by
# another Vault/OpenBao, or a cloud KMS (awskms, gcpckms, azurekeyvault). See docs/deploy.md "Auto-unseal".
# seal "transit" {
#   address    = "https://vault-seal.internal:8200"
#   key_name   = "osi-autounseal"
#   mount_path = "transit/"
# }
