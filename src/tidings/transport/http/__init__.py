"""The Zaqar v2 HTTP transport on Falcon ASGI."""
