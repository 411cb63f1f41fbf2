"""Trader SDK for swqos."""
