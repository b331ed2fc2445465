"""Training and evaluation data for the anomaly models: scenario generator, metrics, evaluation."""
