"""Tracking: everything that reads or writes MLflow."""
