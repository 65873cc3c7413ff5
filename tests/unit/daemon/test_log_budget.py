"""Log budgets: a sample of each kind of per-record line, and a count of the rest once its window ends."""

from __future__ import annotations

from daemon.log_budget import LogBudget


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_key_gets_its_own_lines_per_window_and_the_rest_are_reported_once_it_ends() -> None:
    clock = _Clock()
    budget = LogBudget(lines=3, window_s=10.0, clock=clock)
    assert [budget.allow("a") for _ in range(5)] == [True, True, True, False, False]
    assert [budget.allow("b") for _ in range(4)] == [True, True, True, False]
    clock.now = 9.9
    assert not budget.allow("a")
    assert budget.held_back() == {}  # the windows are not over yet
    clock.now = 10.0
    assert budget.held_back() == {"a": 3, "b": 1}
    assert budget.held_back() == {}  # reported once
    assert budget.allow("a")  # a new window


def test_a_window_that_ends_while_lines_keep_coming_still_reports_what_it_held() -> None:
    clock = _Clock()
    budget = LogBudget(lines=1, window_s=10.0, clock=clock)
    assert [budget.allow("a") for _ in range(3)] == [True, False, False]
    clock.now = 12.0
    assert budget.allow("a")  # the first line of the next window; the last one's count is kept
    assert [budget.allow("a") for _ in range(2)] == [False, False]
    assert budget.held_back() == {"a": 2}
    clock.now = 22.0
    assert budget.held_back() == {"a": 2}


def test_a_final_report_includes_windows_that_are_not_over() -> None:
    clock = _Clock()
    budget = LogBudget(lines=1, window_s=10.0, clock=clock)
    assert [budget.allow("a") for _ in range(4)] == [True, False, False, False]
    assert budget.held_back() == {}
    assert budget.held_back(final=True) == {"a": 3}
    assert budget.held_back(final=True) == {}
