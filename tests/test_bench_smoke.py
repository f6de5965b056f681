"""Smoke test of the benchmark (bench/): every method builds the N=20 network once, inside a
fresh sandbox; the first namespace reaches the last one (and the upstream through the NAT), and
teardown leaves nothing behind. Correctness only: no timing is asserted.

pyroute2 and the CNI plugins are not skipped when missing: CI installs them with
bench/install.sh, so their absence is a failure that says so."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.run import METHODS, measure, missing_requirements
from tests.harness import sandboxed

N = 20


@sandboxed
def test_every_method_builds_and_removes_the_network() -> None:
    keys = list(METHODS)
    problems = missing_requirements(keys)
    assert not problems, "; ".join(problems) + ": run bench/install.sh (as root) first"
    with tempfile.TemporaryDirectory(prefix="nsgen-bench-smoke-") as workroot:
        cells = measure(
            [N], 1, keys, timeout=180, settle_limit=5, workroot=Path(workroot), warmup=False
        )
    report = {key: by_n[N] for key, by_n in cells.items()}
    failed = {key: cell.failures for key, cell in report.items() if cell.failures}
    assert not failed, f"methods that failed at N={N}: {failed}"
    for key, cell in report.items():
        assert len(cell.setup) == 1 and len(cell.teardown) == 1, (key, cell)
        assert not cell.skipped, (key, cell.skipped)


def test_render_benchmark_writes_its_table(tmp_path: Path) -> None:
    """bench.render (CPU and peak memory of `nsgen render`) once at a small N: it must write
    its json and table. Correctness only, no timing."""
    import json

    from bench.render import main

    assert main(["--sizes", "10", "--runs", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "render.json").read_text())
    cell = data["sizes"]["10"]
    assert cell["cpu"] > 0 and cell["memory_mb"] > 0 and len(cell["runs"]) == 1
    assert "| 10 |" in (tmp_path / "render.md").read_text()


@sandboxed
def test_the_firewall_cases_build_and_remove_with_both_backends(tmp_path: Path) -> None:
    """bench.firewall once, small: kube-proxy's rules for 5 Services alone and in a two-node
    cluster, and 5 namespaces, each with iptables and with nftables; every setup holds what it
    should and every teardown leaves the snapshot as it was."""
    from bench.firewall import benchmark
    from nsgen.sandbox import upstream

    with upstream(["eth0"]):
        results = benchmark(5, 2, [5], 1, tmp_path)
    assert len(results) == 3
    for case, times in results.items():
        for firewall, t in times.items():
            assert not t.failures, (case, firewall, t.failures)
            assert len(t.setup) == 1 and len(t.teardown) == 1, (case, firewall)
    services = next(times for case, times in results.items() if case.startswith("services"))
    assert all(len(t.apply) == 1 and len(t.remove) == 1 for t in services.values())
