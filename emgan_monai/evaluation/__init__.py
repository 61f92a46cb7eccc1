"""emgan_monai.evaluation: one module per bundle, the table of its model against its baselines on held-out data."""
