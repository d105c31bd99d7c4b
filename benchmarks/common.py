"""Helpers shared by the workload modules: implementations, worker processes, output and statistics.

An *implementation* is ``ours`` (this repository's pyncette, in the interpreter running the
benchmarks) or ``v1`` (pyncette 1.1.0 from the package index, in its own virtual environment under
``.bench/pyncette-1.1.0``, created on first use and reused after). Both run the same programs,
``worker.py`` and ``pollprobe.py``, in subprocesses.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
V1_VENV = ROOT / ".bench" / "pyncette-1.1.0"
V1_REQUIREMENTS = ["pyncette[redis,postgres,mysql,dynamodb]==1.1.0", "aiosqlite"]
IMPLS = ("ours", "v1")


class ProgramFailed(RuntimeError):
    """A benchmark program exited with an error; the message ends with its stderr."""


def failed(bench: str, impl: str, backend: str, error: ProgramFailed) -> None:
    """Report a measurement that could not be taken (one JSON line) and go on with the next one."""
    reason = [line for line in str(error).splitlines() if line.strip()][-1][:300]
    log(f"{bench} {impl} {backend} failed: {reason}")
    emit({"bench": bench, "impl": impl, "backend": backend, "error": reason})


def emit(record: Mapping[str, Any]) -> None:
    """Print one measurement as one JSON line, with the load averages at the time it was taken."""
    print(json.dumps({**record, "load": load()}, default=str), flush=True)


def log(message: str) -> None:
    """Progress for the person running the benchmark; stderr, so stdout stays JSON lines."""
    print(f"# {message}", file=sys.stderr, flush=True)


def python_for(impl: str) -> str:
    """The interpreter that runs ``impl``; builds the 1.1.0 environment the first time."""
    if impl == "ours":
        return sys.executable
    python = V1_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {V1_VENV} with {' '.join(V1_REQUIREMENTS)}")
        subprocess.run([sys.executable, "-m", "venv", str(V1_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *V1_REQUIREMENTS], check=True)
    return str(python)


def program(name: str, impl: str, args: Iterable[str]) -> list[str]:
    return [python_for(impl), str(BENCHMARKS / name), *args]


def flags(**values: Any) -> list[str]:
    """``--name value`` pairs; ``store`` is JSON-encoded, ``None`` values are left out."""
    result = []
    for name, value in values.items():
        if value is not None:
            result += [f"--{name.replace('_', '-')}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return result


def for_impl(store: Mapping[str, Any], impl: str) -> dict[str, Any]:
    """The store description ``impl`` gets: the ``"v1"`` variant for 1.1.0 when there is one."""
    spec = {key: value for key, value in store.items() if key != "v1"}
    if impl == "v1" and "v1" in store:
        spec.update(store["v1"])
    return spec


def environment(store: Mapping[str, Any]) -> dict[str, str]:
    return {**os.environ, **store.get("env", {})}


def run_program(command: list[str], store: Mapping[str, Any], *, timeout: float) -> list[dict[str, Any]]:
    """Run a benchmark program to completion; return its JSON lines, raise with its stderr on failure."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment(store))
    if done.returncode != 0:
        raise ProgramFailed(f"{' '.join(command[1:3])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def worker(impl: str, mode: str, store: Mapping[str, Any], *, timeout: float = 1800, **options: Any) -> list[dict[str, Any]]:
    """Run ``worker.py <mode>`` under ``impl`` and return its records."""
    spec = for_impl(store, impl)
    return run_program(program("worker.py", impl, [mode, *flags(store=spec, **options)]), spec, timeout=timeout)


def quantiles(samples: list[float]) -> dict[str, float | None]:
    """p50, p99 and max of ``samples`` (seconds) in milliseconds."""
    if not samples:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def ratio(ours: float | None, v1: float | None) -> float | None:
    """ours / v1, rounded; ``None`` when either is missing or v1 is zero."""
    if ours is None or not v1:
        return None
    return round(ours / v1, 2)


def compare(
    bench: str,
    backend: str,
    measured: Mapping[str, Mapping[str, Any]],
    *,
    higher: Iterable[str] = (),
    lower: Iterable[str] = (),
    **keys: Any,
) -> None:
    """Emit one line with both figures and their ratio per metric, oriented so that above 1 favours ours.

    ``higher`` metrics are better when higher (ratio ours / v1), ``lower`` ones when lower (ratio
    v1 / ours). Does nothing unless both implementations were measured.
    """
    if not all(impl in measured for impl in IMPLS):
        return
    record: dict[str, Any] = {"bench": bench, "compare": True, "backend": backend, **keys}
    for key in higher:
        ours, v1 = measured["ours"].get(key), measured["v1"].get(key)
        record[key] = {"ours": ours, "v1": v1, "ratio": ratio(ours, v1)}
    for key in lower:
        ours, v1 = measured["ours"].get(key), measured["v1"].get(key)
        record[key] = {"ours": ours, "v1": v1, "ratio": ratio(v1, ours)}
    log(f"{bench} {backend} {keys}: " + ", ".join(f"{k} {v}" for k, v in record.items() if isinstance(v, dict)))
    emit(record)


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages: the machine is shared, so every record carries them."""
    return [round(value, 2) for value in os.getloadavg()]
