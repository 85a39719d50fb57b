"""What tests share that is not a fixture: local servers, clocks, database copies, row counts.

Modules here are imported by tests and by ``tests/conftest.py``; they never import a test module.
"""
