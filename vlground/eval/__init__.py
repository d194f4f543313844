"""Scoring against the reference evaluators, one module per benchmark."""
