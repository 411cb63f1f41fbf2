"""The enclave signer process and the host-proxy's client for it."""
