"""Metric functions against hand-computed values."""

import numpy as np
import pytest

from genre_serve.evaluation.metrics import auc, mrr, ndcg_at, ranks_of_targets, recall_at, summarize


def test_metrics_match_hand_computed_values():
    ranks = np.array([0, 1, 4, 30])
    assert recall_at(ranks, 2) == 0.5
    assert recall_at(ranks, 10) == 0.75
    # NDCG@10 = mean(1/log2(1+1), 1/log2(2+1), 1/log2(5+1), 0)
    expected = (1.0 + 1 / np.log2(3) + 1 / np.log2(6) + 0.0) / 4
    assert ndcg_at(ranks, 10) == pytest.approx(expected)
    assert mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 31) / 4)
    assert auc(np.array([0, 10]), np.array([11, 11])) == pytest.approx(0.5)


def test_ranks_exclude_the_history_and_count_strictly_better_items():
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0, 9.0]])
    ranks, eligible = ranks_of_targets(scores, [np.array([0]), np.array([4, 4])], np.array([3, 2]))
    # Row 0: items 1 and 2 beat item 3 (item 0 is history). Row 1: ties do not count.
    np.testing.assert_array_equal(ranks, [2, 0])
    np.testing.assert_array_equal(eligible, [4, 4])


def test_summary_has_every_reported_metric():
    s = summarize(np.array([0, 3]), np.array([10, 10]))
    assert set(s) >= {"Recall@10", "Recall@20", "NDCG@10", "NDCG@20", "HitRate@10", "MRR", "AUC"}


def test_recall_with_ties_is_the_expectation_over_random_tie_breaking():
    from genre_serve.evaluation.metrics import recall_at_with_ties

    scores = np.array([
        [3.0, 2.0, 1.0, 0.0],  # target (col 1) at position 1: in the top 2
        [1.0, 1.0, 1.0, 1.0],  # all tied: P(position < 2) = 2 / 4
        [5.0, 4.0, 1.0, 1.0],  # two better, target tied with one: position 2 or 3, never < 2
        [0.0, 2.0, 2.0, 2.0],  # target tied with two, none better: P = 2 / 3
    ])
    got = recall_at_with_ties(scores, np.array([1, 0, 3, 1]), 2)
    assert got == pytest.approx((1 + 0.5 + 0 + 2 / 3) / 4)
    assert recall_at_with_ties(np.ones((3, 10)), np.array([0, 5, 9]), 20) == 1.0
    assert recall_at_with_ties(np.zeros((0, 3)), np.array([], np.int64), 2) == 0.0


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_users():
    from genre_serve.evaluation.metrics import bootstrap_ci

    rng = np.random.default_rng(3)
    small = rng.random(100) < 0.1
    large = rng.random(10_000) < 0.1
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 4  # ~1/sqrt(100) of the width
    # Coverage: over repeated draws, a 95% interval holds the true rate about 95% of the time.
    covered = [lo < 0.1 < hi for lo, hi in (bootstrap_ci(rng.random(300) < 0.1, reps=400, seed=s) for s in range(200))]
    assert 0.88 <= np.mean(covered) <= 0.99


def test_paired_bootstrap_of_a_ratio_resamples_both_methods_together():
    from genre_serve.evaluation.metrics import bootstrap_ci, ndcg_gains

    gains = ndcg_gains(np.array([0, 2, 50, 7, 1, 30]), 10)
    # The same users under the same method: every resample gives exactly 1.
    assert bootstrap_ci(gains, gains) == pytest.approx((1.0, 1.0))
    lo, hi = bootstrap_ci(2 * gains, gains)
    assert lo == pytest.approx(2.0) and hi == pytest.approx(2.0)
    assert np.isnan(bootstrap_ci(np.zeros(0))[0])
