"""The only code that reads or writes secrets: Vault KV credentials, OAuth refresh, transit."""
