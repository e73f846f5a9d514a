"""The sender's heartbeat over its loops: each loop's batch is renewed while that loop makes
progress, and only that loop's rows lapse when it is stuck past the lease."""

from __future__ import annotations

import pytest

from mail.sending.sender import renewable_claims


def test_every_loop_that_started_a_step_within_the_lease_keeps_its_rows() -> None:
    held, stuck = renewable_claims([[1, 2], [3], []], [95.0, 80.0, 99.0], now=100.0, lease_s=30.0)
    assert (held, stuck) == ([1, 2, 3], 0)


def test_a_stuck_loop_lets_its_own_rows_lapse_and_the_others_keep_theirs() -> None:
    held, stuck = renewable_claims([[1, 2], [3, 4]], [60.0, 95.0], now=100.0, lease_s=30.0)
    assert (held, stuck) == ([3, 4], 1)
    assert renewable_claims([[1], [2]], [10.0, 20.0], now=100.0, lease_s=30.0) == ([], 2)


def test_a_loop_exactly_at_the_lease_is_still_renewed() -> None:
    assert renewable_claims([[7]], [70.0], now=100.0, lease_s=30.0) == ([7], 0)


def test_batches_and_progress_must_pair_up() -> None:
    with pytest.raises(ValueError):
        renewable_claims([[1], [2]], [100.0], now=100.0, lease_s=30.0)
