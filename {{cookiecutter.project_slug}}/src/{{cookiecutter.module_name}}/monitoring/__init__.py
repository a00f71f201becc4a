"""Data and prediction drift against the training profile: offline checks and live gauges."""
