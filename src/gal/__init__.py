"""Gradient Adjustment Learning (GAL)."""
