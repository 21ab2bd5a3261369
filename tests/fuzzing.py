"""Run schemathesis (its CLI) against a live Warden and read back what it found."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.harness import ROOT

# Every check that fits Warden's API. Left out: positive_data_acceptance (a schema-valid body
# naming no installed plugin is rightly a 400), use_after_free (DELETE cancels a job, which stays
# readable), object_level_authorization (jobs are not per-user).
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ensure_resource_availability",
    "ignored_auth",
)


@dataclass
class FuzzResult:
    """What one schemathesis run did and found."""

    exit_code: int
    cases: int
    failures: list[str]
    output: str
    statuses: dict[int, int]

    @property
    def responses(self) -> int:
        """Responses the API gave (a case may make several calls, stateful ones a chain)."""
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        """Responses with a 5xx status."""
        return sum(n for status, n in self.statuses.items() if status >= 500)


def run_schemathesis(
    base: str,
    token: str,
    *,
    max_examples: int,
    report_dir: Path,
    seed: int = 7,
    workers: int = 1,
    phases: str = "examples,coverage,fuzzing,stateful",
    timeout: float = 3600,
) -> FuzzResult:
    """Fuzz every operation of `base`'s OpenAPI schema, authenticated with `token`."""
    report_dir.mkdir(parents=True, exist_ok=True)
    args = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{base}/api/schema/",
        "--header",
        f"Authorization: Token {token}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(max_examples),
        "--phases",
        phases,
        "--seed",
        str(seed),
        "--workers",
        str(workers),
        "--request-timeout",
        "60",
        "--generation-database",
        "none",
        "--continue-on-failure",
        "--report",
        "ndjson",
        "--report-dir",
        str(report_dir),
        "--no-color",
        "--output-truncate",
        "false",
    ]
    stats = report_dir / "statuses.txt"
    stats.unlink(missing_ok=True)
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
        "PYTHONPATH": str(ROOT),
        "WARDEN_FUZZ_STATS": str(stats),
    }
    done = subprocess.run(
        args, cwd=report_dir, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = done.stdout + done.stderr
    statuses = (
        Counter(int(line.split()[0]) for line in stats.read_text().splitlines() if line.strip())
        if stats.exists()
        else Counter()
    )
    return FuzzResult(
        exit_code=done.returncode,
        cases=_cases(output),
        failures=_failures(output),
        output=output,
        statuses=dict(sorted(statuses.items())),
    )


def _cases(output: str) -> int:
    """The "Test cases: N generated" figure of the summary."""
    match = re.search(r"Test cases:\s+(\d+) generated", output)
    return int(match.group(1)) if match else 0


def _failures(output: str) -> list[str]:
    """The summary's failure lines, e.g. "ST103 Undocumented status code: 1"."""
    section = output.split("Failures:", 1)[1] if "Failures:" in output else ""
    lines = []
    for line in section.splitlines()[1:]:
        if not line.strip():
            break
        lines.append(line.strip().lstrip("❌").strip())
    return lines
