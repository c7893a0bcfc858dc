"""Idempotent loads: rerun, retry or replay gives the same target state."""
