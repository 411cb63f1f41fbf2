"""swqos-dashboard: the validator's dashboard, served under ``/ui/`` by the admin listener."""

__version__ = "0.1.0"
