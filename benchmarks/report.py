"""Turn the JSON lines of one or more ``run.py`` runs into the Markdown tables of docs/performance.md.

``python benchmarks/report.py results/*.jsonl`` prints one table row per comparison (workload,
backend, variant and metric), with the figures of every run that measured it separated by " / "
in file order, so repeated runs show their spread. Measurements that failed are listed after the
table; measurements of ours alone (no 1.1.0 to compare with) get rows with an empty 1.1.0 column.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from backends import BACKENDS
from run import BENCHES

VARIANT_KEYS = ("processes", "kind", "stored", "method")
SOLO_METRICS = {
    "drain": ("executions_per_s", "cpu_ms_per_execution"),
    "lateness": ("p50_ms", "p99_ms", "max_ms"),
    "memory": ("rss_kib",),
    "schedule": ("per_s",),
}


def variant(record: dict[str, Any]) -> str:
    parts = [f"{key}={record[key]}" for key in VARIANT_KEYS if record.get(key) is not None]
    return ", ".join(parts)


def number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value >= 100:
        return f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def collect(paths: list[str]) -> tuple[dict[tuple[str, ...], dict[str, list[str]]], dict[tuple[str, str], set[str]]]:
    rows: dict[tuple[str, ...], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    errors: dict[tuple[str, str], set[str]] = defaultdict(set)
    compared = set()
    records = [json.loads(line) for path in paths for line in Path(path).read_text().splitlines() if line.startswith("{")]
    for record in records:
        if record.get("compare"):
            compared.add((record["bench"], record["backend"]))
            for metric, pair in record.items():
                if isinstance(pair, dict) and "ratio" in pair:
                    row = rows[(record["backend"], record["bench"], variant(record), metric)]
                    for column in ("ours", "v1", "ratio"):
                        row[column].append(number(pair[column]))
        elif "error" in record:
            errors[(f"{record['backend']} {record['impl']}", record["error"])].add(record["bench"])
    for record in records:
        solo = (record["bench"], record.get("backend"))
        if record.get("impl") == "ours" and "error" not in record and solo not in compared:
            for metric in SOLO_METRICS.get(record["bench"], ()):
                value = record.get(metric)
                value = value[0] if isinstance(value, list) else value
                rows[(record["backend"], record["bench"], variant(record), metric)]["ours"].append(number(value))
    return rows, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    rows, errors = collect(args.paths)
    print("| backend | workload | variant | metric | ours | 1.1.0 | ratio (>1: ours better) |")
    print("|---|---|---|---|---|---|---|")
    order = {name: index for index, name in enumerate((*BACKENDS, *BENCHES))}
    for (backend, bench, name, metric), columns in sorted(rows.items(), key=lambda item: (order[item[0][0]], order[item[0][1]])):
        cells = [" / ".join(columns.get(column, [])) or "n/a" for column in ("ours", "v1", "ratio")]
        print(f"| {backend} | {bench} | {name} | {metric} | {' | '.join(cells)} |")
    for (who, error), benches in errors.items():
        print(f"\n- not measured, {who} ({', '.join(sorted(benches))}): {error}")


if __name__ == "__main__":
    main()
