"""Shared test configuration. Integration tests (marked `integration`) build real namespaces in
a private sandbox and need root; under root, a skipped integration test fails the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

_skipped_under_root: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "integration" in report.keywords and os.geteuid() == 0:
        _skipped_under_root.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_under_root:
        print("\nintegration tests were skipped while running as root (not allowed):")
        for nodeid in _skipped_under_root:
            print(f"  {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
