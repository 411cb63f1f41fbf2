"""swqos client-IP resolver for Cloudflare: ``CF-Connecting-IP``, believed only from Cloudflare's edges."""

__version__ = "0.1.0"
