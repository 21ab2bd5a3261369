"""`make bench`: every figure of issue 9's target table with its baseline, on SQLite and on
PostgreSQL; prints the table, and (full runs) writes it into docs/benchmarks.md with a chart.

    .venv/bin/python bench/run.py [--quick] [--databases sqlite,postgresql] [--label NAME]
                                  [--no-docs]

Each database gets its own stack and process (bench/figures.py). PostgreSQL is a throw-away
cluster from scripts/postgres.sh; where the machine has none, that pass is skipped with a notice.
A full run writes docs/bench/<label>.json, docs/bench/<label>.png and the `<label>` block of
docs/benchmarks.md (label "latest" unless given: keep "before" for the measurements made before
the optimisations). A quick run (`--quick`, or BENCH_QUICK=1) runs every figure briefly and
writes only under a temp dir, unless --label is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import load_average  # noqa: E402
from bench.stack import postgres_databases  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def run_database(database: str, var: Path, quick: bool) -> dict[str, Any] | None:
    """All figures on `database` (sqlite or postgresql), in a process of their own."""
    out = var / f"{database}.json"
    command = [sys.executable, str(ROOT / "bench" / "figures.py"), "--json", str(out)]
    if quick:
        command.append("--quick")
    if database == "postgresql":
        with postgres_databases(var, ["warden", "warden_probe"]) as urls:
            if urls is None:
                print("bench: the PostgreSQL pass is skipped")
                return None
            main_url, probe_url = urls
            command += ["--database-url", main_url, "--probe-database-url", probe_url]
            subprocess.run(command, check=True, cwd=ROOT)
    else:
        subprocess.run(command, check=True, cwd=ROOT)
    return json.loads(out.read_text())


# --- the table ------------------------------------------------------------------------------


def show(side: dict[str, Any], metric: str) -> str:
    """One side of a figure, as the table prints it."""
    if metric == "rps":
        return f"{side['rps']:,.0f} req/s, p99 {side['p99_ms']:.1f} ms"
    if metric == "rate":
        return f"{side['rate']:.1f}/s (p50 {side['p50_ms']:.1f} ms)"
    if metric == "median_s":
        return f"{side['median_s']:.2f} s"
    return f"{side['p50_ms']:.2f} ms (p99 {side['p99_ms']:.1f})"


def ratio_text(figure: dict[str, Any]) -> str:
    ratio = figure["ratio"]
    text = f"{100 * ratio:.0f} %" if figure["metric"] in ("rps", "rate") else f"{ratio:.2f}x"
    return f"{text} {'met' if figure['met'] else 'MISSED'}"


def table(results: dict[str, Any]) -> str:
    """The markdown table of one run: a row per figure, Warden/baseline/ratio per database."""
    runs = results["runs"]
    names = [NAMES[d] for d in runs]
    head = "| figure | target | " + " | ".join(
        f"{n}: Warden | {n}: baseline | {n}: ratio" for n in names
    )
    lines = [head + " |", "|" + "---|" * (2 + 3 * len(names))]
    rows = len(next(iter(runs.values()))["figures"])
    for index in range(rows):
        cells: list[str] = []
        first = None
        for run in runs.values():
            figure = run["figures"][index]
            first = first or figure
            cells += [
                show(figure["warden"], figure["metric"]),
                show(figure["baseline"], figure["metric"]),
                ratio_text(figure),
            ]
        assert first is not None
        title = f"({first['id']}) {first['title']}"
        lines.append(f"| {title} | {first['target']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def legend(results: dict[str, Any]) -> str:
    """Which is Warden and which the baseline, per figure (from the first database)."""
    run = next(iter(results["runs"].values()))
    lines = [
        f"- ({f['id']}) Warden: {f['warden_label']}; baseline: {f['baseline_label']}"
        for f in run["figures"]
    ]
    return "\n".join(dict.fromkeys(lines))


# --- the chart ------------------------------------------------------------------------------


def chart(results: dict[str, Any], path: Path) -> None:
    """Latency distributions (percentile curves) of Warden vs its baseline, a panel per figure,
    both databases in each panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    runs = results["runs"]
    count = len(next(iter(runs.values()))["figures"])
    cols = 2
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(13, 3.4 * rows), squeeze=False)
    colours = {"sqlite": "tab:blue", "postgresql": "tab:orange"}
    for index in range(count):
        ax = axes[index // cols][index % cols]
        for database, run in runs.items():
            figure = run["figures"][index]
            for side, style in (("warden", "-"), ("baseline", "--")):
                curve = figure[side]["curve"]
                ax.plot(
                    [ms for _, ms in curve],
                    [q for q, _ in curve],
                    style,
                    color=colours.get(database, "black"),
                    label=f"{NAMES[database]}: {figure[side + '_label']}",
                )
        figure = next(iter(runs.values()))["figures"][index]
        unit = "per-process time, ms" if figure["id"] == "f" else "latency, ms"
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(unit)
        ax.set_ylabel("percentile")
        ax.set_title(f"({figure['id']}) {figure['title']}".replace("`", ""), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for index in range(count, rows * cols):
        axes[index // cols][index % cols].axis("off")
    fig.suptitle(
        f"Warden (solid) vs baseline (dashed), run '{results['label']}' {results['date']}, "
        f"load {results['load_before']} -> {results['load_after']}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --- the document ---------------------------------------------------------------------------


def doc_block(results: dict[str, Any], chart_path: Path, command: str) -> str:
    meta = results
    lines = [
        f"### Run `{meta['label']}` ({meta['date']})",
        "",
        f"Command: `{command}` (took {meta['elapsed_s'] / 60:.1f} min). Machine: "
        f"{meta['cpus']} CPUs, Python {meta['python']}, load average (1/5/15 min) "
        f"{meta['load_before']} before and {meta['load_after']} after"
        + (" — a QUICK run: smoke test only" if meta["quick"] else "")
        + ". Other work was running on this machine: re-measure on an idle one before "
        "comparing absolute numbers; the ratios are what the targets are about.",
        "",
        table(results),
        "",
        legend(results),
        "",
        "Load average (1 min) as each figure ended: "
        + "; ".join(
            f"{NAMES[database]} "
            + ", ".join(f"({f['id']}) {f['load'].split()[0]}" for f in run["figures"][:6])
            + f", (g) {run['figures'][-1]['load'].split()[0]}"
            for database, run in results["runs"].items()
        )
        + ".",
        "",
        f"![latency distributions, run {meta['label']}]({chart_path.relative_to(DOC.parent)})",
        "",
        "<details><summary>Query plans of figure (g), as the database reported them</summary>",
        "",
        plans_text(results),
        "</details>",
    ]
    return "\n".join(lines)


def plans_text(results: dict[str, Any]) -> str:
    """The EXPLAIN output of figure (g)'s queries, per database and table size."""
    parts = []
    for database, run in results["runs"].items():
        for size, plans in run.get("plans", {}).items():
            rows = next(f for f in run["figures"] if f["id"] == "g")
            label = rows["warden_label"] if size == "large" else rows["baseline_label"]
            for query, plan in plans.items():
                parts.append(f"{NAMES[database]}, {label}, {query}:\n```\n{plan}\n```")
    return "\n\n".join(parts)


def update_doc(label: str, block: str) -> None:
    """Replace (or add, before the first `## ` section after the results heading) the block of
    run `label` between its markers in docs/benchmarks.md."""
    begin, end = f"<!-- bench:{label}:begin -->", f"<!-- bench:{label}:end -->"
    text = DOC.read_text()
    body = f"{begin}\n{block}\n{end}"
    if begin in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + body + tail
    else:
        anchor = "<!-- bench:runs -->"
        if anchor not in text:
            text += f"\n{anchor}\n"
        text = text.replace(anchor, f"{anchor}\n\n{body}", 1)
    DOC.write_text(text)


def rounded(value: Any) -> Any:
    """`value` with every float rounded to 4 significant digits (a smaller JSON file)."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def publish(results: dict[str, Any], target: Path, write_docs: bool) -> Path:
    """Write the results JSON and the chart under `target` and, with `write_docs`, the run's block
    of docs/benchmarks.md; return the chart's path."""
    label = results["label"]
    target.mkdir(parents=True, exist_ok=True)
    (target / f"{label}.json").write_text(json.dumps(rounded(results), separators=(",", ":")))
    chart_path = target / f"{label}.png"
    chart(results, chart_path)
    if write_docs:
        update_doc(label, doc_block(results, chart_path, results["command"]))
        print(f"\nbench: wrote {DOC.relative_to(ROOT)} (block '{label}'), {chart_path}")
    else:
        print(f"\nbench: results {target / (label + '.json')}, chart {chart_path}")
    return chart_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1"
    )
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--label", default=None)
    parser.add_argument("--no-docs", action="store_true", help="print the table only")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        help="measure nothing: redraw the chart and the doc block of a saved run (its JSON)",
    )
    options = parser.parse_args()
    if options.render:
        results = json.loads(options.render.read_text())
        options.render = options.render.resolve()
        print(table(results))
        publish(results, options.render.parent, write_docs=not options.no_docs)
        return
    write_docs = not options.no_docs and (not options.quick or options.label is not None)
    label = options.label or ("quick" if options.quick else "latest")
    command = "make bench" + (f" ARGS='--label {label}'" if label != "latest" else "")
    if options.quick:
        command = f"make bench ARGS='--quick --label {label}'"

    var = Path(tempfile.mkdtemp(prefix="warden-bench-run-"))
    started = time.monotonic()
    results: dict[str, Any] = {
        "label": label,
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "quick": options.quick,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_before": load_average(),
        "runs": {},
    }
    for database in options.databases.split(","):
        run = run_database(database, var, options.quick)
        if run is not None:
            results["runs"][database] = run
    results["load_after"] = load_average()
    results["elapsed_s"] = time.monotonic() - started
    if not results["runs"]:
        raise SystemExit("bench: no database could be measured")

    print()
    print(table(results))
    print()
    print(legend(results))
    publish(results, (ROOT / "docs" / "bench") if write_docs else var, write_docs)
    if write_docs:
        shutil.rmtree(var, ignore_errors=True)
    print(f"bench: {results['elapsed_s'] / 60:.1f} min, load {results['load_after']}")


if __name__ == "__main__":
    main()
