"""The ``tidings`` command: serve, gc, migrate, notifier, ready (main.py),
the admin commands (admin.py) and the pool commands (pools.py)."""

from tidings.cli.main import main, parser

__all__ = ["main", "parser"]
