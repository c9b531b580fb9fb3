"""Fleets over SSH: inventory parsing, transports (SSH and local), rollout (push/status/rollback)."""
