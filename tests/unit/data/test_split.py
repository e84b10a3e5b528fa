"""Splits: no leakage, the right targets, cold items absent from training."""

import numpy as np

from genre_serve.data import build_dataset, leave_last_out, synthetic, time_split


def synthetic_dataset():
    raw, items = synthetic.generate(num_users=60, num_items=120, seed=3)
    return build_dataset(raw, items, name="synthetic")


def test_leave_last_out_holds_out_the_last_two_interactions_per_user():
    ds = synthetic_dataset()
    split = leave_last_out(ds)
    seqs, _, _ = ds.sequences()
    for u, seq in enumerate(seqs):
        assert split.test_item[u] == seq[-1]
        assert split.valid_item[u] == seq[-2]
        np.testing.assert_array_equal(split.train_items[u], seq[:-2])


def test_held_out_interactions_never_appear_in_training():
    split = leave_last_out(synthetic_dataset(), cold_item_fraction=0.1, seed=1)
    for u, train in enumerate(split.train_items):
        assert split.test_item[u] not in train
        assert split.valid_item[u] not in train
    train_items = set(np.concatenate(split.train_items).tolist())
    assert split.cold_items.size > 0
    assert not train_items & set(split.cold_items.tolist())
    assert not set(split.test_item.tolist()) & set(split.cold_items.tolist())


def test_the_held_out_items_are_split_between_validation_and_test():
    split = leave_last_out(synthetic_dataset(), cold_item_fraction=0.1, seed=1)
    valid, test = split.cold_stage_items("valid"), split.cold_stage_items("test")
    assert valid.size and test.size and not set(valid.tolist()) & set(test.tolist())
    np.testing.assert_array_equal(np.sort(np.concatenate([valid, test])), split.cold_items)
    pairs = []
    for stage, items in (("valid", valid), ("test", test)):
        users, hist, targets, times = split.cold_stage(stage)
        assert set(targets.tolist()) <= set(items.tolist())
        for u, h, t, when in zip(users, hist, targets, times):
            np.testing.assert_array_equal(h, split.train_items[u])
            j = list(split.cold_targets[u]).index(t)
            assert split.cold_times[u][j] == when
        pairs += list(zip(users.tolist(), targets.tolist()))
    every = [(u, int(i)) for u, items in enumerate(split.cold_targets) for i in items]
    assert sorted(pairs) == sorted(every)


def test_test_stage_history_includes_the_validation_item():
    split = leave_last_out(synthetic_dataset())
    test = split.stage("test")
    users, hist, targets = test.users, test.histories, test.targets
    u = users[0]
    assert hist[0][-1] == split.valid_item[u] and targets[0] == split.test_item[u]


def test_time_split_targets_come_after_the_cutoff_and_history_before():
    ds = synthetic_dataset()
    split = time_split(ds, 0.2)
    cutoff = np.quantile(ds.interactions["timestamp"], 0.8)
    seqs, _, ts = ds.sequences()
    for u in np.flatnonzero(split.test_item >= 0):
        t_of = dict(zip(seqs[u].tolist(), ts[u].tolist()))
        assert t_of[int(split.test_item[u])] >= cutoff
        assert all(t_of[int(i)] < cutoff for i in split.train_items[u])


def test_splits_keep_the_time_of_every_interaction_and_round_trip(tmp_path):
    from genre_serve.formats.run_dir import load_split, save_split

    ds = synthetic_dataset()
    seqs, _, ts = ds.sequences()
    for split in (leave_last_out(ds, cold_item_fraction=0.1, seed=1), time_split(ds, 0.2)):
        for u in range(len(seqs)):
            t_of = dict(zip(seqs[u].tolist(), ts[u].tolist()))
            assert [t_of[int(i)] for i in split.train_items[u]] == split.train_times[u].tolist()
            assert [t_of[int(i)] for i in split.cold_targets[u]] == split.cold_times[u].tolist()
            for item, time in ((split.valid_item[u], split.valid_time[u]), (split.test_item[u], split.test_time[u])):
                if item >= 0:
                    assert t_of[int(item)] == time
                    assert all(t <= time for t in split.train_times[u])
        users = split.stage("test").users
        np.testing.assert_array_equal(split.stage_times("test"), split.test_time[users])
        save_split(split, tmp_path / "split.npz")
        again = load_split(tmp_path / "split.npz")
        assert again.has_times
        for a, b in zip(again.train_times, split.train_times):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(again.test_time, split.test_time)


def test_several_validation_targets_per_user_are_the_interactions_before_the_test_one(tmp_path):
    """valid_per_user = 3: each user's three interactions before the test one
    are validation targets, each scored from everything before it (and test
    from all of them), in the order stage_times reports; nothing is lost or
    counted twice, and the split saves and loads whole."""
    from genre_serve.formats.run_dir import load_split, save_split

    ds = synthetic_dataset()
    seqs, scens, ts = ds.sequences()
    split = leave_last_out(ds, valid_per_user=3)
    valid, test = split.stage("valid"), split.stage("test")
    times = split.stage_times("valid")
    row = 0
    for u, seq in enumerate(seqs):
        assert split.test_item[u] == seq[-1]
        np.testing.assert_array_equal(split.train_items[u], seq[:-4])
        for j in range(3):  # the targets seq[-4], seq[-3], seq[-2]
            position = len(seq) - 4 + j
            assert valid.users[row] == u and valid.targets[row] == seq[position]
            np.testing.assert_array_equal(valid.histories[row], seq[:position])
            np.testing.assert_array_equal(valid.history_scenarios[row], scens[u][:position])
            assert valid.scenarios[row] == scens[u][position] and times[row] == ts[u][position]
            row += 1
    assert row == len(valid.targets)
    t = list(test.users).index(0)
    np.testing.assert_array_equal(test.histories[t], seqs[0][:-1])
    np.testing.assert_array_equal(split.all_counts(), np.bincount(np.concatenate(seqs), minlength=ds.num_items))
    save_split(split, tmp_path / "split.npz")
    again = load_split(tmp_path / "split.npz")
    for name in ("valid_earlier", "valid_earlier_scenarios", "valid_earlier_times"):
        for a, b in zip(getattr(again, name), getattr(split, name), strict=True):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.stage("valid").targets, valid.targets)


def test_one_validation_target_per_user_is_the_default_split_and_short_histories_keep_one_to_train():
    ds = synthetic_dataset()
    one, default = leave_last_out(ds, valid_per_user=1), leave_last_out(ds)
    assert one.valid_earlier is None and default.valid_earlier is None
    np.testing.assert_array_equal(one.stage("valid").targets, default.stage("valid").targets)
    many = leave_last_out(ds, valid_per_user=1000)
    seqs, _, _ = ds.sequences()
    for u, seq in enumerate(seqs):
        assert len(many.train_items[u]) == 1 and len(many.valid_earlier[u]) == len(seq) - 3


def test_a_validation_count_below_one_is_refused():
    import pytest

    with pytest.raises(ValueError, match="valid_per_user"):
        leave_last_out(synthetic_dataset(), valid_per_user=0)
