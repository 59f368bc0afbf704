"""The daily interpretability report: what the surrogate handles, how well, and what it defers."""
