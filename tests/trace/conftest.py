"""The trace tests need root and tracefs; each leaves tracefs as it found it (the
`tracefs_restored` fixture, in tests/conftest.py: the container tests use it too)."""
