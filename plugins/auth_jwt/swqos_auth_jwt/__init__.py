"""swqos authenticators: ES256 JWT (nine-step verification) and Argon2id API tokens"""
