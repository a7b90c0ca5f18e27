"""Reading a run's results (evaluators/sandbox_report.py)."""

from __future__ import annotations

from evaluators.sandbox_report import CaseResult, Outcome, SandboxReport, read_items


def test_a_report_counts_and_serialises_its_cases() -> None:
    report = SandboxReport(
        Outcome.COMPLETED,
        "all test cases ran",
        (CaseResult(0, True, "3"), CaseResult(1, False, error="ValueError: x")),
        0,
        "",
    )

    assert (report.passed, report.pass_rate) == (1, 0.5)
    feedback = report.feedback()
    assert feedback["cases"] == [
        {"index": 0, "passed": True, "actual": "3"},
        {"index": 1, "passed": False, "actual": None, "error": "ValueError: x"},
    ]
    assert SandboxReport(Outcome.CRASHED, "", (), 1, "").pass_rate == 0


def test_only_marked_json_objects_are_read_from_the_results() -> None:
    results = b'noise\nM{"index": 0}\nM{broken\nM[1]\nX{"index": 1}\nM{"done": true}'

    assert read_items(results, "M") == [{"index": 0}, {"done": True}]
