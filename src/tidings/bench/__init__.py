"""``tidings bench``: a load generator for Zaqar v2 servers, after zaqar-bench.

Runs one phase per role (ping ceiling, producer, observer, consumer) from
several processes with a small keep-alive HTTP client, and reports rates,
latency percentiles, errors, and its own CPU use. See ``cli.py`` for options.
"""

from tidings.bench.cli import main

__all__ = ["main"]
