"""``tidings bench``: command-line parsing and the entry point."""

from __future__ import annotations

import argparse
import sys

from tidings.bench.options import DEFAULT_ROLES, ROLE_ORDER, SQS_ROLES, BenchOptions
from tidings.bench.progress import Progress
from tidings.bench.queues import BenchSetupError
from tidings.bench.report import to_json, to_table
from tidings.bench.runner import BenchError, run_bench
from tidings.bench.sqs import MAX_BATCH
from tidings.bench.target import TargetError, check_target

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _roles(text: str) -> tuple[str, ...]:
    wanted = {r.strip() for r in text.split(",") if r.strip()}
    unknown = wanted - set(ROLE_ORDER)
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(
            f"roles are a comma list of {','.join(ROLE_ORDER)}; got {text!r}"
        )
    # Phases always run in the canonical order (see ROLE_ORDER).
    return tuple(r for r in ROLE_ORDER if r in wanted)


class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in --help, unless its help already says it
    (or it is a flag, off by default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or isinstance(action, argparse._StoreTrueAction) \
                or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".lstrip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tidings bench",
        formatter_class=DefaultsShown,
        description="Load a Zaqar v2 server with producers, consumers and observers, "
        "one phase per role, each compared with the GET /v2/ping ceiling.",
    )
    p.add_argument("--url", default="http://127.0.0.1:8888", help="server base URL")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --url that is not loopback (127.0.0.0/8, ::1)")
    p.add_argument("--project", default="bench", help="X-Project-ID to send")
    p.add_argument("--processes", type=_positive_int, default=1, help="bench processes")
    p.add_argument("--workers", type=_positive_int, default=2,
                   help="concurrent connections per process")
    p.add_argument("--time", type=_seconds, default=5.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=_seconds, default=1.0,
                   help="unmeasured seconds before each phase's window")
    p.add_argument("--roles", type=_roles, default=DEFAULT_ROLES,
                   help=f"comma list of {','.join(ROLE_ORDER)}; the sqs_ roles send "
                        "SendMessage (SendMessageBatch for posts of several messages) "
                        "and ReceiveMessage + DeleteMessageBatch through the SQS API "
                        f"(default: {','.join(DEFAULT_ROLES)})")
    p.add_argument("--message-size", type=_non_negative_int, default=100,
                   help="bytes of payload in each message body")
    p.add_argument("--messages-per-post", type=_positive_int, default=1,
                   help="messages in each producer's post")
    p.add_argument("--messages-per-claim", type=_positive_int, default=10,
                   help="messages each consumer's claim asks for")
    p.add_argument("--observer-limit", type=_positive_int, default=10,
                   help="messages per listed page")
    p.add_argument("--queues", type=_positive_int, default=1,
                   help="queues to spread the workers over")
    p.add_argument("--queue-prefix", default="bench", help="queues are PREFIX-0..N-1")
    p.add_argument("--prefill", type=_non_negative_int, default=None,
                   help="messages to post per queue before observers/consumers "
                   "(default: sized from the ping ceiling, less what producers posted)")
    p.add_argument("--keep-queues", action="store_true",
                   help="do not delete the bench queues afterwards")
    p.add_argument("--bulk-delete", action="store_true",
                   help="consumers delete each claimed batch with one DELETE "
                   "?ids=...&claim_ids=... instead of one DELETE per message")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--quiet", action="store_true",
                   help="no progress on standard error, only the report")
    return p


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    if any(role in SQS_ROLES for role in args.roles) and max(
            args.messages_per_post, args.messages_per_claim) > MAX_BATCH:
        # SQS refuses bigger batches: every request would be an error.
        raise TargetError(f"the sqs_ roles send at most {MAX_BATCH} messages per request "
                          "(--messages-per-post, --messages-per-claim)")
    return BenchOptions(
        target=check_target(args.url, args.allow_remote),
        project=args.project,
        processes=args.processes,
        workers=args.workers,
        time=args.time,
        warmup=args.warmup,
        roles=args.roles,
        message_size=args.message_size,
        messages_per_post=args.messages_per_post,
        messages_per_claim=args.messages_per_claim,
        observer_limit=args.observer_limit,
        queues=args.queues,
        queue_prefix=args.queue_prefix,
        prefill=args.prefill,
        keep_queues=args.keep_queues,
        bulk_delete=args.bulk_delete,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the bench; 0 when it ran, 1 when it could not, 2 on bad usage."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: return, don't exit
        return int(exc.code or 0)
    try:
        options = options_from_args(args)
    except TargetError as exc:
        print(f"tidings bench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        progress = None if args.quiet else Progress(options.roles,
                                                    options.warmup + options.time)
        result = run_bench(options, progress)
    except (BenchSetupError, BenchError) as exc:
        print(f"tidings bench: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(to_json(result) if args.json else to_table(result))
    return EXIT_OK
