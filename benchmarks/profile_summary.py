"""Summarise py-spy's collapsed stacks (``run.py --profile``): where the workers' CPU time goes.

``python benchmarks/profile_summary.py FILE...`` prints the functions with the largest share of
samples, inclusive (the function or anything it called) and by package (``pyncette``, ``asyncio``,
the driver...), so that a bottleneck can be named with evidence.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

FRAME = re.compile(r"^(?P<function>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def package(file: str) -> str:
    """``site-packages/redis/asyncio/x.py`` -> ``redis``; ``.../pyncette-core/src/pyncette/x.py`` -> ``pyncette``."""
    parts = Path(file).parts
    if "pyncette" in parts:
        return "pyncette." + ".".join(parts[parts.index("pyncette") + 1 :]).removesuffix(".py")
    for marker in ("site-packages", "src"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return parts[parts.index(marker) + 1].removesuffix(".py")
    if "lib" in parts and "python3" in "".join(parts):
        return "stdlib:" + Path(file).stem
    return Path(file).stem


def callers(paths: list[str], target: str, top: int) -> None:
    """Which ``pyncette`` frames lead to ``target`` (a substring of a frame), by share of its samples."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        for line in Path(path).read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            frames = stack.split(";")
            hits = [index for index, frame in enumerate(frames) if target in frame]
            if not hits:
                continue
            total += int(count_text)
            own = [frame for frame in frames[: hits[0]] if "pyncette/" in frame]
            counts[own[-1].split(" (")[0] + " -> " + frames[hits[0] - 1].split(" (")[0] if own else "(outside pyncette)"] += int(
                count_text
            )
    print(f"{total} samples in {target}; last pyncette frame -> direct caller:")
    for name, count in counts.most_common(top):
        print(f"  {100 * count / max(total, 1):5.1f}%  {name}")


def summarise(paths: list[str], top: int, *, imports: bool = False) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        for line in Path(path).read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            if not imports and "_find_and_load" in stack:
                continue  # start-up: importing modules is not part of the steady state
            total += count
            frames = [frame for frame in stack.split(";") if not frame.startswith("process ") and not frame.startswith("thread ")]
            names = []
            for frame in frames:
                match = FRAME.match(frame)
                names.append(f"{match['function']} ({package(match['file'])})" if match else frame)
            for name in set(names):
                inclusive[name] += count
            if names:
                own[names[-1]] += count
                packages[names[-1].rpartition("(")[2].rstrip(")")] += count
    print(f"{total} samples in {len(paths)} file(s)")
    for title, counter in (("self time by package", packages), ("self time", own), ("inclusive time", inclusive)):
        print(f"\n{title}:")
        for name, count in counter.most_common(top):
            print(f"  {100 * count / max(total, 1):5.1f}%  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--imports", action="store_true", help="keep samples taken while importing modules")
    parser.add_argument("--callers", metavar="FUNCTION", help="instead: which pyncette code leads to FUNCTION")
    args = parser.parse_args()
    if args.callers:
        callers(args.paths, args.callers, args.top)
    else:
        summarise(args.paths, args.top, imports=args.imports)


if __name__ == "__main__":
    main()
