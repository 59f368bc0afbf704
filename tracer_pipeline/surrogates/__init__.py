"""Stage 3: candidate surrogate classifiers on frozen embeddings, and trace splits."""
