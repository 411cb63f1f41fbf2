"""Conformance suites: base test classes a plugin's tests subclass to prove it meets the bar the
first-party plugins meet. See :mod:`swqos_testing.conformance.client_ip`."""

from swqos_testing.conformance.client_ip import ClientIpResolverConformance, RangeDocumentServer

__all__ = ["ClientIpResolverConformance", "RangeDocumentServer"]
