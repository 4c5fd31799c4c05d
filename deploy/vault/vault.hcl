# deploy/vault/vault.hcl - Vault server for the compose `vault` profile.
# File storage in the vaultdata volume, listener on the internal network
# only (TLS is terminated nowhere: Vault is never exposed through Traefik).
storage "file" {
  path = "/vault/file"
}

listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = 1
}

disable_mlock = true
ui            = false
