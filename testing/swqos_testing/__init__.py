"""Test doubles (all registered as insecure) and conformance suites for swqos plugins."""
