"""The embedded default driver: one SQLite file in WAL mode."""
