"""Typed factories, one module per feature: every argument named, typed and keyword-only.

They build what a test needs through the real services (never rows written by hand), so a
factory-made object has been through the same rules as one made over the API.
"""
