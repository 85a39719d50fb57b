"""Tables of this feature (being built)."""
