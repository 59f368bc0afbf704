"""Stage 1: reading, validating and quarantining the day's trace files."""
