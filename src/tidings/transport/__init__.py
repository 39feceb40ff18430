"""Transports: how requests arrive (HTTP, WebSocket); no rules of their own."""
