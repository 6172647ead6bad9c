"""Numerics that are not PyMC: closed forms and exact conditional draws (numpy/scipy only)."""
