"""The operation layer: one function per operation, shared by every transport.

Each function validates its input, calls storage, and shapes the result into
plain JSON-ready values. Transports decode requests, call these functions,
and encode what they return; they hold no rules of their own.
"""
