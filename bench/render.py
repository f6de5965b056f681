"""How much CPU and memory `nsgen render` (load, validate, plan, render, write) needs for the
benchmark's topology at N = 10 .. 1000 namespaces. Needs no root and no sandbox: nothing is
run but the renderer.

    python -m bench.render                    # N = 10,100,500,1000, 5 runs each
    python -m bench.render --sizes 1000 --runs 9 --out bench/results

Each run is a fresh `python -m nsgen render FILE -o DIR` (interpreter start-up and imports
included, as a user pays them); its user+system CPU seconds and peak resident memory come
from wait4(2) for that one child. The first run of each N is a warm-up (it also fills the
compiled-template cache, as any earlier nsgen command would have) and is not counted; before
it, the kernel is given up to 60 s to finish destroying the namespaces of an earlier
benchmark (bench.run's settle), which otherwise takes CPU time from these runs.
Writes OUT/render.json and OUT/render.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import settle
from bench.topology import topology_yaml

ROOT = Path(__file__).resolve().parent.parent
TARGET_CPU = 1.0  # seconds, at N = 1000 (issue: under 1 s of CPU)
TARGET_MEMORY = 150  # MB, at N = 1000


def measure(argv: list[str]) -> dict[str, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of one command."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert process.stderr is not None
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # wait4 reaped it
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {errors.decode(errors='replace')}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "memory_mb": usage.ru_maxrss / 1024,  # Linux reports kilobytes
    }


def run(sizes: list[int], runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="nsgen-render-bench-") as tmp:
        for n in sizes:
            topology = Path(tmp, f"bench-{n}.yaml")
            topology.write_text(topology_yaml(n), encoding="utf-8")
            argv = [sys.executable, "-m", "nsgen", "render", str(topology), "-o", f"{tmp}/out"]
            settle(60)  # after bench.run the kernel destroys namespaces for a while
            measure(argv)  # warm-up
            samples = [measure(argv) for _ in range(runs)]
            results[str(n)] = {
                "runs": samples,
                **{
                    key: statistics.median(s[key] for s in samples)
                    for key in ("wall", "cpu", "memory_mb")
                },
            }
            print(
                f"N={n}: cpu {results[str(n)]['cpu']:.2f} s, "
                f"peak {results[str(n)]['memory_mb']:.0f} MB",
                flush=True,
            )
    return results


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| N | CPU s (median) | wall s | peak memory MB | CPU per namespace ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n, cell in results.items():
        lines.append(
            f"| {n} | {cell['cpu']:.2f} | {cell['wall']:.2f} | {cell['memory_mb']:.0f} | "
            f"{cell['cpu'] / int(n) * 1000:.2f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.render", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", default="10,100,500,1000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.runs < 1 or any(n < 2 or n > 1021 for n in sizes):
        parser.error("--runs must be ≥ 1 and every size within 2 … 1021")
    results = run(sizes, args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "render.json").write_text(
        json.dumps(
            {"nproc": os.cpu_count(), "python": sys.version.split()[0], "sizes": results}, indent=2
        )
        + "\n",
        encoding="utf-8",
    )
    lines = [
        "# `nsgen render` of the benchmark topology",
        "",
        f"Medians of {args.runs} runs after a warm-up; each run is a whole `python -m nsgen "
        "render` (start-up and imports included); CPU is user + system time of that process.",
        "",
        *table(results),
        "",
    ]
    if "1000" in results:
        cell = results["1000"]
        cpu_ok = cell["cpu"] < TARGET_CPU
        memory_ok = cell["memory_mb"] < TARGET_MEMORY
        cpu_verdict = "met" if cpu_ok else "missed"
        memory_verdict = "met" if memory_ok else "missed"
        lines.append(
            f"Target at N = 1000: under {TARGET_CPU:.0f} s of CPU ({cpu_verdict}: "
            f"{cell['cpu']:.2f} s) and under {TARGET_MEMORY} MB peak "
            f"({memory_verdict}: {cell['memory_mb']:.0f} MB)."
        )
        lines.append("")
    (args.out / "render.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
