"""halfopen: find, explain and fix TCP half-open connections on Linux."""

__version__ = "0.1.0"
