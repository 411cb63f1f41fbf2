"""Example third-party swqos plugin: ``Fastly-Client-IP``, believed only from Fastly's edges."""

__version__ = "0.1.0"
