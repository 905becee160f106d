"""The gRPC edge of the agent: servicers, error mapping, health and reflection."""
