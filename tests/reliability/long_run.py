"""The crash test, long variant, on demand: ``python -m tests.reliability.long_run --kills 50 --records 100000``.

Runs :func:`tests.reliability.crash.run_crash_test` (``tanpuhui pull`` and ``tanpuhui forward``, and with
``--serve`` also ``tanpuhui serve`` receiving ``--pushes`` signed webhooks, SIGKILLed at random points, round after
round) and prints the lost / duplicated / delivered counts; exits 1 when anything was lost or doubled, an
acknowledged webhook's records did not arrive, or the store or its audit log is unsound. Run from the repository
root with the project's virtualenv: ``.venv/bin/python -m tests.reliability.long_run --help``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .crash import CrashConfig, run_crash_test


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.long_run", description=__doc__)
    parser.add_argument("--kills", type=int, default=50, help="processes to SIGKILL (default 50)")
    parser.add_argument("--records", type=int, default=100_000, help="journeys the partner publishes (default 100k)")
    parser.add_argument("--days", type=int, default=7, help="days the dataset spans (default 7)")
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=1000, help="forwarder batch size")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--serve", action="store_true", help="half the rounds run (and kill) the sidecar")
    parser.add_argument("--pushes", type=int, default=0, help="with --serve: YRD records pushed as webhooks")
    parser.add_argument("--push-batch", type=int, default=100, help="records per webhook (default 100)")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run's files here (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON too")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tanpuhui-crash-"))
    cfg = CrashConfig(
        workdir=workdir,
        trips=args.records,
        kills=args.kills,
        seed=args.seed,
        page_size=args.page_size,
        batch_size=args.batch_size,
        synchronous=args.synchronous,
        days=args.days,
        serve=args.serve,
        pushes=args.pushes if args.serve else 0,
        push_batch=args.push_batch,
        round_timeout=600.0,
        final_timeout=3600.0,
    )
    print(f"crash test: {args.records} journeys, {args.kills} kills, seed {args.seed}, workdir {workdir}", flush=True)
    report = run_crash_test(cfg, log=lambda line: print(line, flush=True))
    print(report.summary())
    print(
        f"lost: {len(report.lost)}  duplicated: {len(report.duplicated)}  delivered: {report.delivered}  "
        f"acknowledged webhooks not delivered: {len(report.acked_not_delivered)}  "
        f"audit log: {'intact' if not report.audit_problems else 'BROKEN'}"
    )
    for problem in report.audit_problems[:10]:
        print(f"audit: {problem}")
    if report.lost:
        print(f"first lost sequence numbers: {report.lost[:20]}")
    for failure in report.failures:
        print(f"failure: {failure}")
    if args.json:
        doc = {
            "seed": args.seed,
            "journeys": args.records,
            "expected": report.expected,
            "delivered": report.delivered,
            "lost": len(report.lost),
            "duplicated": len(report.duplicated),
            "unexpected": len(report.unexpected),
            "redelivered": report.redelivered,
            "webhooks_acked": report.webhooks_acked,
            "webhook_attempts": report.webhook_attempts,
            "acked_not_delivered": len(report.acked_not_delivered),
            "audit_entries": report.audit_entries,
            "audit_ok": not report.audit_problems,
            "synchronous": args.synchronous,
            "kills": dict(report.kills),
            "rounds": report.rounds,
            "integrity": report.integrity,
            "seconds": round(report.seconds, 1),
        }
        print(json.dumps(doc))
    if args.workdir is None and report.ok:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
