"""Tidings: a multi-tenant messaging and notification service speaking Zaqar v2."""

__version__ = "0.1.0"
