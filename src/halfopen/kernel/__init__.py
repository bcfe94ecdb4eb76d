"""Kernel access below collect: small readers of /proc and socket options."""
