"""Demo data: generated customer-support traces, so that the pipeline runs without real data."""
