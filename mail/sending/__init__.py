"""Sending campaigns: the outbox, transports, and the sender loop."""
