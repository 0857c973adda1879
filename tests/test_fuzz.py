"""`onbeat bench fuzz`: the drivers run the grammar against the targets, count the cases, and catch and save
what fails (a target broken on purpose proves it)."""
import re
import subprocess
import sys

import pytest

from onbeat.evaluation import fuzz
from onbeat.evaluation import fuzz_grammar as grammar


def test_the_random_driver_counts_cases_and_outcomes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "onbeat.commands.cli", "bench", "fuzz", "--target", "control",
                             "--seconds", "2", "--driver", "random", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    cases = int(re.search(r"fuzz control \(random, not coverage-guided\): (\d+) cases", result.stdout).group(1))
    outcomes = re.search(r"outcomes: malformed (\d+), parsed (\d+)", result.stdout)
    assert cases > 100 and int(outcomes.group(1)) + int(outcomes.group(2)) == cases
    assert "failures: 0" in result.stdout


@pytest.mark.slow
def test_atheris_fuzzes_the_control_input_with_coverage(tmp_path):
    if not fuzz.atheris_available():
        pytest.skip("atheris is not installed (pip install onbeat[fuzz])")
    report = fuzz.run_atheris("control", 3, tmp_path)
    assert report.cases > 100 and not report.failures, report.lines()
    assert re.fullmatch(r"coverage \d+ edges, \d+ features", report.coverage)


def test_a_broken_target_is_caught_saved_and_replayed(tmp_path, monkeypatch):
    def breaks_on_bundles(data, _):
        if data.startswith(b"#bundle"):
            raise ZeroDivisionError("a bundle")
        return "fine"

    monkeypatch.setitem(fuzz.TARGETS, "control", fuzz.Target(lambda c: grammar.osc_packet(c), breaks_on_bundles))
    report = fuzz.run_random("control", 1.0, tmp_path)
    assert report.failures and report.outcomes["fine"] == report.cases - len(report.failures)
    saved, what = report.failures[0]
    assert "ZeroDivisionError: a bundle" in what and saved.read_bytes().startswith(b"#bundle")
    with pytest.raises(ZeroDivisionError):
        fuzz.replay("control", saved)
