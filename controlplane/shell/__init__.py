"""Asyncio shells that drive the sans-IO gossip core: UDP, push-pull over gRPC, timers."""
