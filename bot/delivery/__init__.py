"""Delivery after commit: the outbox and what it delivers (Slack messages, agent callbacks)."""
