"""Shared helpers of the test suite (importable: pytest's pythonpath has tests/)."""

from __future__ import annotations

import numpy as np

from genre_serve.kernels import HAS_CUDA

DEVICES = ["cpu", "cuda"] if HAS_CUDA else ["cpu"]


def random_problem(
    seed, batch, num_items, dim_cf, dim_ct, k, alpha, exclude, integer_valued
) -> tuple[dict, bool]:
    """fused_topk keyword arguments, and whether its arithmetic is exact.

    Integer-valued vectors and weights in quarters make every score exact in
    float32, so ties are real and results must match the reference bit for bit.
    """
    rng = np.random.default_rng(seed)

    def mat(rows, cols):
        if integer_valued:
            return rng.integers(-3, 4, size=(rows, cols)).astype(np.float32)
        return rng.standard_normal((rows, cols)).astype(np.float32)

    p: dict = {"user_cf": mat(batch, dim_cf), "item_cf": mat(num_items, dim_cf), "k": k}
    if dim_ct:
        p["user_ct"], p["item_ct"] = mat(batch, dim_ct), mat(num_items, dim_ct)
        if alpha == "scalar":
            p["alpha"] = float(rng.choice([0.25, 0.5, 0.75]))
        elif alpha == "array":
            p["alpha"] = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=batch).astype(np.float32)
        else:
            p["alpha"] = alpha
    if exclude is not None:
        sizes = {
            "few": lambda: rng.integers(0, 5),
            "csr": lambda: rng.integers(0, 5),
            "many": lambda: rng.integers(0, num_items // 2 + 2),
            "all": lambda: num_items,
        }[exclude]
        rows = []
        for _ in range(batch):
            n = int(sizes())
            row = rng.permutation(num_items)[:n] if exclude == "all" else rng.integers(0, num_items, n)
            if row.size and rng.random() < 0.5:
                row = np.concatenate([row, row[: 1 + row.size // 3]])  # duplicates
            rows.append(row)
        if exclude == "csr":
            indptr = np.concatenate([[0], np.cumsum([r.size for r in rows], dtype=np.int64)])
            flat = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
            p["exclude_csr"] = (indptr, flat)
        else:
            p["exclude"] = rows
    return p, integer_valued


def true_scores(problem: dict, indices: np.ndarray) -> np.ndarray:
    """Float64 scores of the given items, straight from the definition."""
    ucf = problem["user_cf"].astype(np.float64)
    icf = problem["item_cf"].astype(np.float64)
    safe = np.maximum(indices, 0)
    scores = np.einsum("bd,bkd->bk", ucf, icf[safe])
    if "user_ct" in problem:
        alpha = np.broadcast_to(np.asarray(problem.get("alpha", 1.0), np.float64), (ucf.shape[0],))
        uct = problem["user_ct"].astype(np.float64)
        ict = problem["item_ct"].astype(np.float64)
        ct = np.einsum("bd,bkd->bk", uct, ict[safe])
        scores = alpha[:, None] * scores + (1 - alpha[:, None]) * ct
    return scores


def excluded_sets(problem: dict, batch: int) -> list[set]:
    if "exclude" in problem:
        return [set(np.asarray(r).tolist()) for r in problem["exclude"]]
    if "exclude_csr" in problem:
        indptr, flat = problem["exclude_csr"]
        return [set(flat[indptr[b] : indptr[b + 1]].tolist()) for b in range(batch)]
    return [set() for _ in range(batch)]


def assert_same_topk(problem: dict, exact: bool, got, want) -> None:
    (gi, gs), (wi, ws) = got, want
    assert gi.dtype == np.int64 and gs.dtype == np.float32
    assert gi.shape == wi.shape == gs.shape == ws.shape
    np.testing.assert_array_equal(gi < 0, wi < 0, err_msg="different number of results")
    if exact:
        np.testing.assert_array_equal(gi, wi)
        np.testing.assert_array_equal(gs, ws)
        return
    # Float32 summation order differs: the sorted score lists agree within a
    # tolerance, and every returned item really has the score it is listed with.
    np.testing.assert_allclose(gs, ws, rtol=1e-4, atol=1e-4)
    valid = gi >= 0
    np.testing.assert_allclose(gs[valid], true_scores(problem, gi)[valid], rtol=1e-4, atol=1e-4)
    for b, banned in enumerate(excluded_sets(problem, gi.shape[0])):
        row = gi[b][gi[b] >= 0].tolist()
        assert len(set(row)) == len(row), "an item returned twice"
        assert not banned & set(row), "an excluded item returned"


# A model small enough to train in seconds (tests that need a trained run).
SMALL_TRAIN_CONFIG = {
    "epochs": 3,
    "ranker_epochs": 1,
    "batch_size": 128,
    "sequence_batch_size": 8,  # the transformer encoder's (tests that choose it)
    "patience": 10,
    "model": {"dim": 16, "hidden": 32, "max_history": 20, "ranker_hidden": [16]},
}


def train_synthetic(out, num_users: int, num_items: int, seed: int, **overrides):
    """Trains SMALL_TRAIN_CONFIG (plus overrides) on synthetic data into `out`;
    returns the dataset."""
    from genre_serve.config import TrainConfig
    from genre_serve.data import build_dataset, synthetic
    from genre_serve.train.trainer import train

    raw, items = synthetic.generate(num_users=num_users, num_items=num_items, seed=seed)
    ds = build_dataset(raw, items, name="synthetic")
    train(ds, TrainConfig.from_dict(SMALL_TRAIN_CONFIG | overrides), out, progress=False)
    return ds
