#!/usr/bin/env python3
"""Where PostgreSQL's time goes, by statement, for one `tidings bench` load.

    .venv/bin/python scripts/bench_pg_statements.py --servers 1,2,1,2 -- \
        --time 5 --warmup 1 --workers 32 --roles consumer --messages-per-claim 10 --prefill 80000

Starts a private durable PostgreSQL (fsync on, as scripts/bench_ab.sh
runs it) on a free loopback port with pg_stat_statements loaded, then for
each entry of ``--servers`` a `tidings serve --workers N` on a fresh
database, resets the statistics, runs the bench (arguments after ``--``)
and prints the rates and the statements that took the most time: calls,
total and mean milliseconds, rows. The statistics include what the bench
does before it measures (its --prefill posts, its warm-up).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.postgres_server import PostgresServer, new_server  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

TOP_STATEMENTS = """
    SELECT calls, round(total_exec_time::numeric, 1), round((total_exec_time / calls)::numeric, 3),
           rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 80)
    FROM pg_stat_statements
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY total_exec_time DESC LIMIT {limit}
"""


def start_postgres() -> PostgresServer:
    server = new_server(durable=True)
    server.stop()
    with (server.data / "postgresql.conf").open("a") as conf:
        conf.write("\nshared_preload_libraries = 'pg_stat_statements'\n"
                   "pg_stat_statements.track = all\n")
    return server.start()


def measure(pg: PostgresServer, run: int, workers: int, bench: list[str], limit: int) -> None:
    database = f"statements_{run}"
    pg.psql(f"CREATE DATABASE {database}")
    pg.psql("CREATE EXTENSION pg_stat_statements", database)
    server = ServerProcess(storage=pg.url(database), workers=workers).start()
    try:
        pg.psql("SELECT pg_stat_statements_reset()", database)
        done = subprocess.run([sys.executable, "-m", "tidings.bench", "--url", server.url,
                               "--json", "--quiet", *bench],
                              capture_output=True, text=True, check=True)
        print(f"== run {run}: {workers} process(es)")
        for role, figures in json.loads(done.stdout)["roles"].items():
            print(f"{role}: {figures['requests_per_s']} req/s, {figures['messages_per_s']} msg/s, "
                  f"errors {figures['errors']}")
        print("calls | total ms | ms each | rows | statement")
        print(pg.psql(TOP_STATEMENTS.format(limit=limit), database))
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="1,2",
                        help="server processes of each run, in order (default 1,2)")
    parser.add_argument("--top", type=int, default=6, help="statements shown per run")
    parser.add_argument("bench", nargs=argparse.REMAINDER, help="-- then tidings bench's arguments")
    args = parser.parse_args()
    bench = args.bench[1:] if args.bench[:1] == ["--"] else args.bench
    pg = start_postgres()
    try:
        for run, workers in enumerate(int(n) for n in args.servers.split(",")):
            measure(pg, run, workers, bench, args.top)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
