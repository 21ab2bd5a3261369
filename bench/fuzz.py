"""`make fuzz`: schemathesis against a whole running Warden (gunicorn, prefork worker, beat,
Redis; SQLite, or PostgreSQL with --postgres), every operation, authenticated, with the stateful
links of the analyze responses. Fails unless: no 5xx, no schemathesis failure (responses as
documented), every job terminal, each plugin's counters equal to its jobs, the worker alive.

    .venv/bin/python bench/fuzz.py [--max-examples 500] [--min-cases 5000] [--postgres]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, report
from tests.fuzzing import FuzzResult


def merge(rounds: list[FuzzResult]) -> FuzzResult:
    """One result for several schemathesis runs."""
    statuses: dict[int, int] = {}
    for r in rounds:
        for status, count in r.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    return FuzzResult(
        exit_code=max(r.exit_code for r in rounds),
        cases=sum(r.cases for r in rounds),
        failures=[failure for r in rounds for failure in r.failures],
        output="\n".join(r.output for r in rounds),
        statuses=dict(sorted(statuses.items())),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=500, help="per operation and phase")
    parser.add_argument("--min-cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", action="store_true", help="a throw-away PostgreSQL")
    options = parser.parse_args()

    # Fuzzed input reaches the fault plugin many times: keep it accepting jobs throughout.
    stack = Stack(
        name="fuzz",
        postgres=options.postgres,
        env={"WARDEN_LOG_LEVEL": "WARNING", "WARDEN_QUARANTINE_AFTER": "1000000"},
        keep=True,  # its logs, database and the full report
    )
    try:
        api = stack.start()
        from tests.fuzzing import run_schemathesis
        from tests.invariants import counter_mismatches, job_totals, wait_all_terminal

        started = time.monotonic()
        # Hypothesis stops early on operations whose inputs it has exhausted, so the number of
        # cases varies: run again with the next seed until the total reaches --min-cases.
        rounds = []
        while sum(r.cases for r in rounds) < options.min_cases and len(rounds) < 5:
            rounds.append(
                run_schemathesis(
                    api.base,
                    api.token or "",
                    max_examples=options.max_examples,
                    report_dir=stack.var / f"fuzz-report-{len(rounds) + 1}",
                    seed=options.seed + len(rounds),
                    timeout=4 * 3600,
                )
            )
        result = merge(rounds)
        duration = time.monotonic() - started
        (stack.var / "schemathesis.txt").write_text(result.output)
        wait_all_terminal(300)
        mismatches = counter_mismatches()
        locked = stack.logs().count("database is locked")
        worker_alive = stack.worker is not None and stack.worker.alive()
        problems = [
            *(f"schemathesis: {failure}" for failure in result.failures),
            *([f"schemathesis exited with {result.exit_code}"] if result.exit_code else []),
            *(
                [f"{result.server_errors} responses with a 5xx status"]
                if result.server_errors
                else []
            ),
            *(
                [f"only {result.cases} cases (< {options.min_cases})"]
                if result.cases < options.min_cases
                else []
            ),
            *mismatches,
            *([f'"database is locked" {locked} times in the logs'] if locked else []),
            *([] if worker_alive else ["the worker died"]),
        ]
        print(result.output[-3000:])
        print(
            report(
                [
                    ("database", "PostgreSQL" if options.postgres else "SQLite"),
                    ("test cases (schemathesis)", f"{result.cases} in {len(rounds)} run(s)"),
                    ("HTTP responses", result.responses),
                    ("responses by status", result.statuses),
                    ("5xx responses", result.server_errors),
                    ("schemathesis failures", len(result.failures)),
                    ("jobs", job_totals()),
                    ("jobs not terminal", 0),
                    ("counters == jobs", not mismatches),
                    ('"database is locked"', locked),
                    ("worker alive", worker_alive),
                    ("fuzzing time", f"{duration:.0f} s"),
                    ("logs, database, full report", stack.var),
                ]
            )
        )
    finally:
        stack.stop()
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    print("make fuzz: " + ("FAILED" if problems else "passed"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
