"""swqos-state: persistent and shared state stores (sqlite, redis) and ``swqos state``."""
