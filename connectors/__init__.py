"""Talking to outside systems, nothing else: the connector contract, the registry, the HTTP layer,
one package per vendor, and the sandbox fakes that stand in for the vendors in the demo and in tests."""
