"""swqos client-IP resolver for Cloudflare"""
