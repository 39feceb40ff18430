"""The Redis driver: redis-py asyncio (hiredis), single server or Cluster."""
