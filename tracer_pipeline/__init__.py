"""tracer-pipeline: LLM classification traces in, a gated surrogate classifier out, refit daily."""

__version__ = "0.1.0"
