"""The prediction server: FastAPI app, model loading and reloading, metrics."""
