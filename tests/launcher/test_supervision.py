"""`make run`'s restart policy: backoff doubling over exits soon after a start, back to the
first delay after a run that lasted, given up on after repeated failures to start."""

from __future__ import annotations

import pytest

from launcher.supervision import GiveUpError, RestartPolicy, Restarts

POLICY = RestartPolicy(first_delay=1, max_delay=5, fast_seconds=10, give_up_after=5)


def test_delays_double_over_fast_exits_and_reset_after_a_run_that_lasted() -> None:
    restarts = Restarts("image", POLICY)
    assert [restarts.delay_after_exit(1) for _ in range(4)] == [1, 2, 4, 5]
    assert restarts.delay_after_exit(3600) == 1  # it ran for an hour: a crash, not a loop
    assert restarts.delay_after_exit(1) == 1
    assert restarts.count == 6


def test_a_process_that_keeps_failing_at_start_is_given_up_on() -> None:
    restarts = Restarts("orchestrator", POLICY)
    for _ in range(4):
        restarts.delay_after_exit(0.5)
    with pytest.raises(GiveUpError, match="orchestrator exited 5 times in a row within 10 s"):
        restarts.delay_after_exit(0.5)
