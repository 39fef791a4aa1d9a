"""Coalition Hub client: mutual-TLS gRPC, signed statements, and a sync that verifies
everything the hub sends (docs/PROTOCOL.md). See clients/python/README.md."""
