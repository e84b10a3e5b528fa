"""Recent popularity: counts in a window before each request time, past only."""

import numpy as np
import pytest

from genre_serve.models.recent_popularity import DAY, RecentPopularity


def test_counts_only_interactions_inside_the_window_before_each_time():
    items = np.array([0, 1, 1, 2, 1, 0])
    times = np.array([0, 1, 2, 3, 4, 10]) * DAY
    recent_counter = RecentPopularity(items, times, num_items=4, window_days=3)
    got = recent_counter.at(np.array([4 * DAY, 3 * DAY + 1, 11 * DAY, 0]))
    np.testing.assert_allclose(got, np.log1p([
        [0, 2, 1, 0],  # [1, 4) days: items 1, 1, 2 (the interaction at day 4 is not before it)
        [0, 2, 1, 0],  # [0 + 1 s, 3 days + 1 s): days 1, 2, 3
        [1, 0, 0, 0],  # [8, 11): the day-10 interaction only
        [0, 0, 0, 0],  # nothing before the first interaction
    ]))
    # The served snapshot: the window ending just after the newest interaction.
    np.testing.assert_allclose(recent_counter.latest(), np.log1p([1, 0, 0, 0]))


def test_order_of_the_log_does_not_matter_and_bad_windows_are_refused():
    rng = np.random.default_rng(0)
    items, times = rng.integers(0, 30, 500), rng.integers(0, 100 * DAY, 500)
    a = RecentPopularity(items, times, 30, 7).at(np.array([50 * DAY, 99 * DAY]))
    perm = rng.permutation(500)
    b = RecentPopularity(items[perm], times[perm], 30, 7).at(np.array([50 * DAY, 99 * DAY]))
    np.testing.assert_array_equal(a, b)
    brute = np.log1p(np.bincount(items[(times >= 43 * DAY) & (times < 50 * DAY)], minlength=30))
    np.testing.assert_allclose(a[0], brute, rtol=1e-6)
    with pytest.raises(ValueError, match="window_days"):
        RecentPopularity(items, times, 30, 0)
