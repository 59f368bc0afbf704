"""Stage 2: sentence embeddings of trace texts."""
