"""swqos key provider: Nitro NSM attestation and KMS Decrypt with Recipient"""
