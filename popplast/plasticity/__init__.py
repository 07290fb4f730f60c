"""Plasticity: learning mechanisms as torch components."""
