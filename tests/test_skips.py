"""The skip gate (tests/skip_gate.py): a skip that .ci/allowed-skips.txt does not name fails the run."""

from __future__ import annotations

import pytest

from tests.skip_gate import ALLOWED_SKIPS, read_allowed

SUITE = """
import pytest

def test_needs_a_gpu():
    pytest.skip("needs a GPU")

def test_runs():
    assert True
"""
UNLISTED = """
import pytest

def test_quietly_missing():
    pytest.skip("espeak-ng is not installed")
"""


def run_gated(pytester: pytest.Pytester, *files: str) -> pytest.RunResult:
    allowed = pytester.path / "allowed.txt"
    allowed.write_text("test_*.py::test_needs_a_gpu | needs a GPU | no GPU in CI\n")
    for i, text in enumerate(files):
        pytester.makepyfile(**{f"test_{i}": text})
    return pytester.runpytest_inprocess("-p", "tests.skip_gate", "--allowed-skips", str(allowed), "-rs")


def test_an_allowed_skip_passes(pytester):
    result = run_gated(pytester, SUITE)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=1)


def test_an_unlisted_skip_fails_the_run_naming_it(pytester):
    result = run_gated(pytester, SUITE, UNLISTED)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(
        ["*skips not in .ci/allowed-skips.txt*", "*test_quietly_missing: espeak-ng is not installed"]
    )


def test_the_committed_allow_list_reads_and_gives_a_reason_for_each_skip():
    allowed = read_allowed(ALLOWED_SKIPS)
    assert allowed and all(len(a.why) > 10 for a in allowed)


def test_a_malformed_allow_list_line_is_named(pytester):
    bad = pytester.path / "allowed.txt"
    bad.write_text("tests/x.py | no reason column\n")
    with pytest.raises(pytest.UsageError, match=r"allowed.txt:1: expected 'TEST-PATTERN \| REASON \| WHY'"):
        read_allowed(bad)
