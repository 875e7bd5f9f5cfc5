"""Weighted losses (issue 4)."""
