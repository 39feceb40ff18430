"""The PostgreSQL storage driver (asyncpg)."""
