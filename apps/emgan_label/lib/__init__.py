"""Inference tasks of the emgan_monai MONAI Label app."""
