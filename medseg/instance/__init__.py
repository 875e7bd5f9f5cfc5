"""Instance <-> semantic conversions (later issues)."""
