"""Reliability and security: load, faults, hostile input, authorisation (issue #10)."""
