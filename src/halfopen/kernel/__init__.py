"""Kernel access below collect: small readers of /proc and socket options."""

from __future__ import annotations
