"""A pytest plugin: every skip must be named, with its reason, in .ci/allowed-skips.txt, or the run fails.

A skip hides a test that did not run. The ones that may happen in CI (no GPU on the CI machine, say) are listed
with why; any other one (a missing apt package, a dependency that failed to import, data that is not where the
test looks) fails `make test`, so a green run means what it says. Loaded by tests/conftest.py.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import pytest

ALLOWED_SKIPS = Path(__file__).resolve().parents[1] / ".ci" / "allowed-skips.txt"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--allowed-skips", type=Path, default=ALLOWED_SKIPS, help="the skips that may happen")


@dataclass(frozen=True)
class AllowedSkip:
    test: str  # an fnmatch pattern over the test id
    reason: str  # a substring of the skip's reason
    why: str


def read_allowed(path: Path) -> list[AllowedSkip]:
    """Lines `TEST-PATTERN | REASON-SUBSTRING | WHY`; `#` starts a comment."""
    allowed = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [part.strip() for part in line.split("|")]
        if len(parts) != 3 or not all(parts):
            raise pytest.UsageError(f"{path}:{number}: expected 'TEST-PATTERN | REASON | WHY', got {raw!r}")
        allowed.append(AllowedSkip(*parts))
    return allowed


def skip_reason(report: pytest.TestReport) -> str:
    _, _, reason = report.longrepr if isinstance(report.longrepr, tuple) else ("", 0, str(report.longrepr))
    return reason.removeprefix("Skipped: ")


def is_allowed(test: str, reason: str, allowed: list[AllowedSkip]) -> bool:
    return any(fnmatch.fnmatch(test, a.test) and a.reason in reason for a in allowed)


class SkipGate:
    def __init__(self, allowed: list[AllowedSkip]):
        self.allowed = allowed
        self.unlisted: list[tuple[str, str]] = []

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # xdist hands every worker's reports to this hook in the controller too; workers hold no gate
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = skip_reason(report)
            if not is_allowed(report.nodeid, reason, self.allowed):
                self.unlisted.append((report.nodeid, reason))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.unlisted and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.unlisted:
            terminalreporter.section("skips not in .ci/allowed-skips.txt (each one fails the run)", red=True)
            for test, reason in self.unlisted:
                terminalreporter.line(f"{test}: {reason}")
            terminalreporter.line("Install what the reason names (.ci/run lists every install) or, where the")
            terminalreporter.line("skip is right on a CI machine, add it to .ci/allowed-skips.txt with why.")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the xdist controller, or a run without xdist
        gate = SkipGate(read_allowed(config.getoption("allowed_skips")))
        config.pluginmanager.register(gate, "contrastlab-skip-gate")
