"""Stage 5: the router packaged as an MLflow model version, and the champion alias."""
