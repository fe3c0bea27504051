"""Reliability harness: hard kills, consumer outages, partner faults, hostile input, the audit log (issue 7)."""
