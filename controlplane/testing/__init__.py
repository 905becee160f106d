"""Test support shipped with the agent.

Simulated clock, network and clusters for deterministic tests, and real agent
processes for integration tests and benchmarks.
"""
