"""Per-route latency from a server's /metrics (Prometheus histograms), for
scripts/bench_ab.sh: request count and the bucket bounds holding the p50
and p99 of each write route (the buckets are 1, 2.5, 5, 10, 25, 50 ms...).

    python scripts/bench_ab_routes.py METRICS_FILE ROUND SIDE
"""

from __future__ import annotations

import re
import sys

_LINE = re.compile(r'tidings_http_request_duration_seconds_bucket\{(.*)\} (\S+)')
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def quantile_bounds(path: str) -> dict[str, tuple[int, float, float]]:
    """route -> (requests, p50 bucket bound, p99 bucket bound), in ms."""
    buckets: dict[str, list[tuple[float, float]]] = {}
    with open(path) as metrics:
        for line in metrics:
            match = _LINE.match(line)
            if not match:
                continue
            labels = dict(_LABEL.findall(match.group(1)))
            if labels.get("method") not in ("POST", "DELETE"):
                continue
            route = f"{labels['method']} {labels['route']}"
            buckets.setdefault(route, []).append((float(labels["le"]), float(match.group(2))))
    found = {}
    for route, pairs in buckets.items():
        pairs.sort()
        total = pairs[-1][1]
        if total < 100:  # set-up requests, not load
            continue
        bound = {q: next(le for le, n in pairs if n >= q * total) for q in (0.5, 0.99)}
        found[route] = (int(total), bound[0.5] * 1000, bound[0.99] * 1000)
    return found


def main() -> None:
    path, round_, side = sys.argv[1:4]
    for route, (total, p50, p99) in sorted(quantile_bounds(path).items()):
        print(f"round {round_} {side} {route}: {total} requests, p50 <= {p50:g} ms, "
              f"p99 <= {p99:g} ms")


if __name__ == "__main__":
    main()
