"""Durable state: cursors, dedup index, outbox, quarantine, delivery state."""
