"""Helpers the tests import: configuration, databases, servers, the simulator, Midtrans."""
