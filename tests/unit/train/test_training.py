"""A short training run on synthetic data, the run directory, and the CLI."""

import json

import numpy as np
import pytest

from genre_serve.cli import main
from genre_serve.config import TrainConfig
from genre_serve.data import synthetic
from genre_serve.errors import ConfigError
from genre_serve.evaluation.genre_eval import retrieval_ranks
from genre_serve.evaluation.metrics import ndcg_at
from genre_serve.formats.run_dir import load_run
from genre_serve.models.genre import GenreModel
from genre_serve.train.trainer import train
from tests_support import SMALL_TRAIN_CONFIG, train_synthetic

SMALL = SMALL_TRAIN_CONFIG | {"epochs": 4}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    ds = train_synthetic(out, num_users=150, num_items=200, seed=1, epochs=4)
    return ds, load_run(out, weights="selection")


def test_training_improves_validation_ndcg_over_the_untrained_model(trained):
    ds, run = trained
    import torch

    torch.manual_seed(0)
    untrained = GenreModel(ds.num_items, len(ds.scenarios), run.model.items.text[1:], run.config.model).eval()
    valid = run.split.stage("valid")
    hist, targets, scen = valid.histories, valid.targets, valid.scenarios
    before = ndcg_at(retrieval_ranks(untrained, hist, scen, targets)[0], 10)
    after = ndcg_at(retrieval_ranks(run.model, hist, scen, targets)[0], 10)
    assert after > before + 0.02


def test_run_directory_round_trips(trained):
    ds, run = trained
    assert run.items.ids == ds.items.ids
    assert run.scenarios == ds.scenarios
    assert len(run.split.train_items) == ds.num_users
    meta = json.loads((run.path / "meta.json").read_text())
    assert meta["retrieval_history"] and "alpha_per_scenario" in meta


def test_training_is_reproducible_with_a_seed(trained, tmp_path):
    ds, run = trained
    train(ds, TrainConfig.from_dict(SMALL), tmp_path, progress=False)
    for weights in ("selection", "served"):
        first, again = load_run(run.path, weights=weights), load_run(tmp_path, weights=weights)
        for (name, a), (_, b) in zip(first.model.state_dict().items(), again.model.state_dict().items()):
            assert np.array_equal(a.numpy(), b.numpy()), (weights, name)


@pytest.fixture(scope="module")
def trained_attention(tmp_path_factory):
    """A run of the attention encoder without a deployment fit: what runs of formats 1 and 2 hold."""
    out = tmp_path_factory.mktemp("attention_run")
    ds = train_synthetic(out, num_users=150, num_items=200, seed=1, epochs=2, refit=False,
                         model=SMALL_TRAIN_CONFIG["model"] | {"encoder": "attention"})
    return ds, load_run(out)


def _as_format_2(run_path, target):
    """A copy of a format-3 attention-encoder run as format 2 wrote it."""
    import shutil

    shutil.copytree(run_path, target)
    meta = json.loads((target / "meta.json").read_text())
    meta["format_version"] = 2
    for key in ("refit", "sequence_batch_size"):
        del meta["config"][key]
    for key in ("encoder", "blocks", "heads"):
        del meta["config"]["model"][key]
    for key in ("served_weights", "deployment_fit"):
        del meta[key]
    (target / "meta.json").write_text(json.dumps(meta))
    return meta


def test_a_run_of_format_2_loads_with_the_attention_encoder_serving_its_selection_model(trained_attention,
                                                                                        tmp_path):
    _, run = trained_attention
    _as_format_2(run.path, tmp_path / "old")
    loaded = load_run(tmp_path / "old")
    assert loaded.config.model.encoder == "attention" and not loaded.served_is_refit
    for (name, a), (_, b) in zip(run.model.state_dict().items(), loaded.model.state_dict().items()):
        assert np.array_equal(a.numpy(), b.numpy()), name
    assert load_run(tmp_path / "old", weights="selection").model_is_refit is False


def test_cf_init_als_starts_the_cf_vectors_from_the_als_factors(trained):
    from genre_serve.evaluation.baselines import ImplicitMF
    from genre_serve.train.trainer import init_cf

    ds, run = trained
    cfg = TrainConfig.from_dict(SMALL | {"cf_init": "als"})
    model = GenreModel(ds.num_items, len(ds.scenarios), run.model.items.text[1:], cfg.model)
    init_cf(model, run.split, cfg)
    factors = ImplicitMF("als", factors=cfg.model.dim, seed=cfg.seed).fit(run.split).item_factors
    np.testing.assert_allclose(model.items.cf.weight[1:].detach().numpy(), factors, rtol=1e-5, atol=1e-6)
    assert not model.items.cf.weight[0].any()  # padding stays zero
    with pytest.raises(ValueError, match="cf_init"):
        init_cf(model, run.split, TrainConfig.from_dict(SMALL | {"cf_init": "svd"}))


def test_cf_lr_scale_sets_how_far_the_cf_item_vectors_move_from_als(trained):
    import torch

    from genre_serve.train.trainer import init_cf, train_retrieval

    ds, run = trained
    moved = {}
    for scale in (0.0, 0.1, 1.0):
        cfg = TrainConfig.from_dict(SMALL | {"epochs": 2, "cf_lr_scale": scale, "ema_decay": 0.0})
        torch.manual_seed(0)
        model = GenreModel(ds.num_items, len(ds.scenarios), run.model.items.text[1:], cfg.model)
        init_cf(model, run.split, cfg)
        start_cf = model.items.cf.weight.detach().clone()
        start_proj = model.items.proj[0].weight.detach().clone()
        train_retrieval(model, run.split, cfg, progress=False)
        moved[scale] = float((model.items.cf.weight.detach() - start_cf).abs().max())
        assert float((model.items.proj[0].weight.detach() - start_proj).abs().max()) > 0  # the rest trains
    # Adam's steps are about the learning rate per coordinate.
    assert moved[0.0] == 0.0 and 0 < moved[0.1] < 0.5 * moved[1.0]


def test_a_run_of_format_1_loads_as_it_was_trained(trained_attention, tmp_path):
    """Format 1: no format_version, no fusion-fit settings or new-item bias, the
    recent-popularity tensors under their old names."""
    import torch

    ds, run = trained_attention
    old = tmp_path / "old"
    meta = _as_format_2(run.path, old)
    del meta["format_version"]
    for key in ("cf_lr_scale", "calibrate_fusion"):
        del meta["config"][key]
    (old / "meta.json").write_text(json.dumps(meta))
    state = torch.load(old / "model.pt", weights_only=True)
    del state["new_item_bias"]
    state["items.trend"] = state.pop("items.recent_popularity")
    state["user.trend_weight.weight"] = state.pop("user.recent_popularity_weight.weight")
    torch.save(state, old / "model.pt")
    loaded = load_run(old)
    assert loaded.config.cf_lr_scale == 1.0 and loaded.config.calibrate_fusion is False
    assert loaded.config.model.recent_popularity_days == run.config.model.recent_popularity_days
    torch.testing.assert_close(loaded.model.items.recent_popularity, run.model.items.recent_popularity)
    torch.testing.assert_close(loaded.model.user.recent_popularity_weight.weight,
                               run.model.user.recent_popularity_weight.weight)
    assert float(loaded.model.new_item_bias) == 0.0  # new items by content alone, as served then


def test_a_run_of_a_newer_format_is_refused_with_one_clear_message(trained, tmp_path):
    import shutil

    from genre_serve.errors import RunDirError

    _, run = trained
    newer = tmp_path / "newer"
    shutil.copytree(run.path, newer)
    meta = json.loads((newer / "meta.json").read_text())
    meta["format_version"] = 99
    (newer / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RunDirError, match="run format 99 is newer"):
        load_run(newer)


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    (tmp_path / "c.toml").write_text("epochs = 'many'\n")
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig.from_toml(tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({"model": {"width": 3}})


@pytest.mark.parametrize("field, bad", [("softmax_items", "some"), ("lr_schedule", "linear"), ("cf_init", "svd"),
                                        ("bf16", "maybe"), ("cold_item_fraction", 1.0), ("epochs", 0),
                                        ("valid_per_user", 0)])
def test_config_rejects_a_bad_choice_where_it_is_read_not_when_training_starts(tmp_path, field, bad):
    (tmp_path / "c.toml").write_text(f"{field} = {bad!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError, match=field):
        TrainConfig.from_toml(tmp_path / "c.toml")
    with pytest.raises(ConfigError, match=field):
        TrainConfig().with_env({f"GENRE_SERVE_TRAIN_{field.upper()}": str(bad)})


def test_cli_trains_and_evaluates_a_user_supplied_csv_pair(tmp_path, capsys):
    raw, items = synthetic.generate(num_users=80, num_items=100, seed=2)
    raw.to_csv(tmp_path / "interactions.csv", index=False)
    items.to_csv(tmp_path / "items.csv", index=False)
    (tmp_path / "cfg.toml").write_text(
        "epochs = 2\nranker_epochs = 1\n[model]\ndim = 16\nhidden = 32\nranker_hidden = [16]\n"
    )
    run = tmp_path / "run"
    assert main(["train", "--interactions", str(tmp_path / "interactions.csv"), "--items",
                 str(tmp_path / "items.csv"), "--out", str(run), "--config", str(tmp_path / "cfg.toml"),
                 "--quiet"]) == 0
    assert main(["evaluate", str(run), "--no-baselines", "--quiet", "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert {"most-popular", "fused", "fused + ranker"} <= set(report["methods"])
    lo, hi = report["methods"]["fused + ranker"]["NDCG@10 / most-popular ci95"]
    assert lo <= report["methods"]["fused + ranker"]["NDCG@10 / most-popular"] <= hi
    out = capsys.readouterr().out
    assert "NDCG@10" in out and "fused + ranker" in out
    assert report["served_weights"] == "refit" and report["weights"] == "selection"
    assert "export serves a deployment fit" in out
    assert main(["train", "--interactions", str(tmp_path / "interactions.csv"), "--out", str(tmp_path / "plain"),
                 "--config", str(tmp_path / "cfg.toml"), "--no-refit", "--quiet"]) == 0
    assert load_run(tmp_path / "plain").meta["served_weights"] == "selection"


def test_cli_reports_a_missing_file_in_one_line(tmp_path, capsys):
    code = main(["train", "--interactions", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "file not found" in err and "Traceback" not in err
    assert main(["evaluate", str(tmp_path / "missing")]) == 2


def test_fusion_is_fitted_on_the_validation_likelihood_and_the_snapshot_is_served(trained):
    import torch

    from genre_serve.evaluation.genre_eval import recent_popularity_counter
    from genre_serve.train.calibration import FusionScores

    ds, run = trained
    cal = json.loads((run.path / "meta.json").read_text())["fusion_calibration"]
    assert cal["accepted"] and cal["valid_cross_entropy_after"] < cal["valid_cross_entropy_before"]
    # The saved model carries the fitted values; every scenario's alpha logit
    # moved by the same shift (the differences between scenarios stay as trained).
    logits = run.model.alpha_logit.detach()
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), cal["after"]["alpha"], rtol=1e-6)
    before = torch.logit(torch.tensor(cal["before"]["alpha"]))
    assert len(before) > 1 and np.ptp((logits - before).numpy()) < 1e-4
    w = run.model.user.recent_popularity_weight.weight[:, 0].detach()
    assert np.all(w.numpy() == np.float32(cal["after"]["recent_popularity_weight"][0]))
    bias = run.model.new_item_bias
    assert float(bias) == pytest.approx(cal["after"]["new_item_bias"])
    # A minimum of the validation cross-entropy: moving any fitted number raises it.
    data = FusionScores(run.model, run.split, run.config.seed, cold=run.config.cold_calibration)
    temperature = cal["temperature"]
    with torch.no_grad():
        best = float(data.cross_entropy(logits, w[0], bias, temperature))
        assert best == pytest.approx(cal["valid_cross_entropy_after"], rel=1e-4)
        for step in (-0.3, 0.3):
            assert float(data.cross_entropy(logits + step, w[0], bias, temperature)) > best
            assert float(data.cross_entropy(logits, w[0] + step, bias, temperature)) > best
            # Validation's held-out items name new items: the bias is fitted at a minimum too.
            assert float(data.cross_entropy(logits, w[0], bias + step, temperature)) > best
    assert data.ndcg10(logits, w[0], bias) == pytest.approx(cal["valid_ndcg@10_after"])
    # Served tables carry the snapshot after the newest training interaction.
    np.testing.assert_allclose(run.model.items.recent_popularity[1:].numpy(),
                               recent_popularity_counter(run.model, run.split).latest())


def test_with_validations_held_out_items_the_fit_sees_new_items_chosen(trained):
    """cold=True: validation's half of the held-out items (their interactions)
    join the likelihood, weighted to their share of all interactions, and the
    new-item bias, flat in the warm-only fit, is fitted at a minimum of it."""
    import copy

    import torch

    from genre_serve.train.calibration import FusionScores, calibrate_fusion

    ds, run = trained
    split = run.split
    users, _, targets, _ = split.cold_stage("valid")
    assert targets.size and set(targets.tolist()) <= set(split.cold_stage_items("valid").tolist())
    data = FusionScores(run.model, split, run.config.seed, cold=True)
    cold_rows = ~data.warm
    assert cold_rows.sum() == targets.size and data.warm.sum() == len(split.stage("valid").targets)
    share = targets.size / split.all_counts().sum()
    ratio = float(data.weights[torch.from_numpy(cold_rows)].sum() / data.weights[torch.from_numpy(data.warm)].sum())
    assert ratio == pytest.approx(share / (1 - share), rel=1e-5)
    model = copy.deepcopy(run.model)
    fit = calibrate_fusion(model, split, run.config.seed, progress=False, cold=True)
    assert fit["valid_cold_pairs"] == targets.size
    fitted = FusionScores(model, split, run.config.seed, cold=True)
    w = model.user.recent_popularity_weight.weight[0, 0]
    with torch.no_grad():
        best = float(fitted.cross_entropy(model.alpha_logit, w, model.new_item_bias, fit["temperature"]))
        for step in (-0.5, 0.5):
            assert float(fitted.cross_entropy(model.alpha_logit, w, model.new_item_bias + step,
                                              fit["temperature"])) > best
    assert fit["valid_cold_recall@20_after"] == fitted.cold_recall20(model.alpha_logit, w, model.new_item_bias)


def test_a_subsampled_fit_keeps_the_same_share_of_warm_and_cold_rows(trained, monkeypatch):
    """Above MAX_FIT_CELLS the fit's rows are subsampled by group, so a few
    cold rows are neither lost to chance nor left outweighing the warm ones."""
    import genre_serve.train.calibration as C

    _, run = trained
    full = C.FusionScores(run.model, run.split, run.config.seed, cold=True)
    n_warm, n_cold = int(full.warm.sum()), int((~full.warm).sum())
    limit = (n_warm + n_cold) // 2
    monkeypatch.setattr(C, "MAX_FIT_CELLS", run.split.num_items * limit)
    half = C.FusionScores(run.model, run.split, run.config.seed, cold=True)
    share = limit / (n_warm + n_cold)
    assert int(half.warm.sum()) == round(n_warm * share) and int((~half.warm).sum()) == round(n_cold * share)
    assert set(half.targets[half.warm].tolist()) <= set(full.targets[full.warm].tolist())
    assert set(half.weights.tolist()) == set(full.weights.tolist())


def test_the_fit_scores_what_evaluation_scores(trained):
    """FusionScores restates the served fusion in torch (for gradients): at
    the model's own parameters it equals variant_scores, new-item bias included."""
    import torch

    from genre_serve.evaluation.genre_eval import (
        item_tables,
        recent_popularity_counter,
        stage_recent_popularity,
        user_vectors,
        variant_scores,
    )
    from genre_serve.evaluation.metrics import exclude_histories
    from genre_serve.train.calibration import FusionScores

    ds, run = trained
    model = run.model
    data = FusionScores(model, run.split, run.config.seed, stage="test")
    with torch.no_grad():
        weight = model.user.recent_popularity_weight.weight[0, 0]
        fit = data.fused(model.alpha_logit, weight, model.new_item_bias).numpy()
    recent_popularity = stage_recent_popularity(recent_popularity_counter(model, run.split), run.split, "test")
    served = variant_scores("fused", *user_vectors(model, data.histories, data.scenarios), *item_tables(model),
                            recent_popularity, new_item_bias=float(model.new_item_bias))
    exclude_histories(served, data.histories)
    seen = data.seen.numpy()
    assert float(model.new_item_bias) != 0.0 and data.new.any()
    np.testing.assert_allclose(fit[~seen], served[~seen], rtol=1e-4, atol=1e-4)


def test_per_request_scoring_equals_the_served_kernel_path_at_the_snapshot_time(trained):
    """Evaluation reads recent popularity per request (dense scores, torch
    features); serving reads the tables' snapshot (fused_topk, cross_features
    kernels). Given the snapshot as every request's recent_popularity, the two agree."""
    import torch

    from genre_serve.evaluation.genre_eval import item_tables, rerank, user_vectors

    ds, run = trained
    model = run.model
    saved = model.user.recent_popularity_weight.weight.detach().clone()
    with torch.no_grad():
        model.user.recent_popularity_weight.weight.fill_(0.8)  # whatever was chosen, make the column count
    try:
        test = run.split.stage("test")
        hist, scen = test.histories, test.scenarios
        tables, users = item_tables(model), user_vectors(model, hist, scen)
        snapshot = np.broadcast_to(tables[0][:, -1], (len(hist), tables[0].shape[0])).copy()
        served_idx, served_logits = rerank(model, *users, *tables, hist, 20)
        eval_idx, eval_logits = rerank(model, *users, *tables, hist, 20, recent_popularity=snapshot)
        np.testing.assert_allclose(eval_logits, served_logits, rtol=1e-4, atol=1e-4)
        assert (eval_idx == served_idx).mean() > 0.99  # near-ties may swap
    finally:
        with torch.no_grad():
            model.user.recent_popularity_weight.weight.copy_(saved)


def test_weight_average_tracks_an_exponential_average_and_swaps_back():
    import torch

    from genre_serve.train.trainer import WeightAverage

    p = torch.nn.Parameter(torch.zeros(3))
    avg = WeightAverage([p], decay=0.5)
    for value in (4.0, 8.0):
        with torch.no_grad():
            p.fill_(value)
        avg.update()
    # 0 -> 0.5 * 0 + 0.5 * 4 = 2 -> 0.5 * 2 + 0.5 * 8 = 5
    with avg.swapped_in():
        assert torch.equal(p.detach(), torch.full((3,), 5.0))
    assert torch.equal(p.detach(), torch.full((3,), 8.0))  # the raw weights are back
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage([p], decay=1.0)


def test_recent_popular_baseline_ranks_by_the_window_before_each_request(trained):
    from genre_serve.evaluation.baselines import RecentPopular
    from genre_serve.models.recent_popularity import RecentPopularity

    _, run = trained
    split = run.split
    test = split.stage("test")
    users, hist, scen = test.users, test.histories, test.scenarios
    times = split.stage_times("test")
    bl = RecentPopular(7).fit(split)
    scores = bl.score(users, hist, scen, times)
    counts = RecentPopularity.of_split(split, 7).at(times)
    # Window counts decide; global popularity only breaks their ties.
    assert np.all(np.abs(scores - counts) < 1e-3 + 1e-6)
    with pytest.raises(ValueError, match="request times"):
        bl.score(users, hist, scen)


def test_training_overrides_come_from_their_own_environment_prefix():
    import warnings

    base = TrainConfig()
    assert base.with_env({"GENRE_SERVE_TRAIN_EPOCHS": "5", "GENRE_SERVE_TRAIN_CF_INIT": "random"}).epochs == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new prefix warns of nothing
        base.with_env({"GENRE_SERVE_TRAIN_SEED": "3", "GENRE_SERVE_NUM_THREADS": "2"})
    with pytest.warns(FutureWarning, match="GENRE_SERVE_EPOCHS is deprecated: set GENRE_SERVE_TRAIN_EPOCHS"):
        assert base.with_env({"GENRE_SERVE_EPOCHS": "7"}).epochs == 7
    # The new name wins over the old one, without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert base.with_env({"GENRE_SERVE_EPOCHS": "7", "GENRE_SERVE_TRAIN_EPOCHS": "2"}).epochs == 2
    with pytest.raises(ConfigError, match="GENRE_SERVE_TRAIN_EPOCHS"):
        base.with_env({"GENRE_SERVE_TRAIN_EPOCHS": "many"})


def test_the_package_version_is_the_installed_distribution_version(capsys):
    from importlib.metadata import version

    import genre_serve

    assert genre_serve.__version__ == version("genre-serve")
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and version("genre-serve") in capsys.readouterr().out


def test_the_served_model_is_a_deployment_fit_on_every_interaction(trained):
    """train selects on the split, then refits on every interaction with the
    selected epochs and fusion; export serves the refit, evaluate the selection."""
    from genre_serve.evaluation.evaluate import evaluate_run
    from genre_serve.train.trainer import best_epoch

    ds, selection = trained
    served = load_run(selection.path)
    meta = served.meta
    assert meta["served_weights"] == "refit" and served.model_is_refit and not selection.model_is_refit
    assert (served.path / "selection.pt").exists()
    fit = meta["deployment_fit"]
    assert fit["retrieval_epochs"] == max(1, best_epoch(meta["retrieval_history"]))
    assert len(fit["retrieval_history"]) == fit["retrieval_epochs"]
    assert fit["interactions"] == len(ds.interactions)
    # Different weights, the same calibrated fusion.
    assert not np.array_equal(served.model.items.cf.weight.detach().numpy(),
                              selection.model.items.cf.weight.detach().numpy())
    np.testing.assert_array_equal(served.model.alpha_logit.detach().numpy(),
                                  selection.model.alpha_logit.detach().numpy())
    assert float(served.model.new_item_bias) == float(selection.model.new_item_bias)
    # Popularity of every interaction, held-out ones and cold items included.
    counts = np.bincount(ds.interactions["item"].to_numpy(), minlength=ds.num_items)
    np.testing.assert_array_equal(served.popularity(), counts)
    np.testing.assert_array_equal(selection.popularity(), selection.split.train_counts())
    # Items held out of the selection (cold) are trained in the refit.
    cold = selection.split.cold_items
    assert cold.size and served.model.items.cf.weight[cold + 1].abs().sum() > 0
    with pytest.raises(ValueError, match="deployment fit"):
        evaluate_run(served, with_baselines=False, progress=False)


def test_no_refit_serves_the_selection_model(tmp_path):
    train_synthetic(tmp_path, num_users=60, num_items=50, seed=2, epochs=1, refit=False)
    run = load_run(tmp_path)
    assert run.meta["served_weights"] == "selection" and not run.model_is_refit
    assert not (tmp_path / "selection.pt").exists()
    assert run.meta["deployment_fit"] == {"skipped": "refit off"}
    for (name, a), (_, b) in zip(run.model.state_dict().items(),
                                 load_run(tmp_path, weights="selection").model.state_dict().items()):
        assert np.array_equal(a.numpy(), b.numpy()), name


@pytest.mark.parametrize("recipe_file, encoder", [("transformer.toml", "transformer"), ("sasrec.toml", "sasrec")])
def test_the_sequential_recipes_train_export_and_serve_what_they_trained(tmp_path, recipe_file, encoder):
    """configs/transformer.toml's and configs/sasrec.toml's encoders, small:
    each learns, and export's ONNX check (onnxruntime == PyTorch on several
    shapes) passes on it."""
    from pathlib import Path

    from genre_serve.export.repository import export_run
    from genre_serve.serving.pipeline import InProcessRecommender
    from genre_serve.serving.recommender import VersionRecommender

    recipe = TrainConfig.from_toml(Path(__file__).resolve().parents[3] / "configs" / recipe_file)
    assert recipe.model.encoder == encoder and recipe.model.max_history == 200
    # The sasrec recipe starts from random CF rows (no ALS start): more epochs.
    options = {"ema_decay": 0.9, "epochs": 4} if encoder == "transformer" else {
        "epochs": 10, "cf_init": "random", "cf_lr_scale": 1.0, "target_window": 1, "lr": 3e-3,
        "lr_schedule": "constant"}
    ds = train_synthetic(tmp_path / "run", num_users=150, num_items=200, seed=1, **options,
                         model=SMALL_TRAIN_CONFIG["model"] | {"encoder": encoder})
    run = load_run(tmp_path / "run", weights="selection")
    assert max(h["valid_ndcg@10"] for h in run.meta["retrieval_history"]) > 0.05
    if encoder == "sasrec":
        # Its alpha is the best of the likelihood's and a grid on validation NDCG@10.
        chosen = run.meta["fusion_calibration"]["alpha_by_ndcg"]
        assert run.meta["fusion_calibration"]["valid_ndcg@10_after"] == max(chosen["valid_ndcg@10"].values())
        assert np.allclose(chosen["alpha"], list(run.meta["alpha_per_scenario"].values()))
    export_run(tmp_path / "run", tmp_path / "repo")
    served = VersionRecommender(tmp_path / "repo" / "genre_recommend" / "1")
    reference = InProcessRecommender(tmp_path / "run")
    for h in run.split.stage("test").histories[:5]:
        history = run.items.external(h)
        assert served.recommend(history, 8)[0] == reference.recommend(history, 8)[0]
    assert ds.num_items == 200


def test_a_run_with_several_validation_targets_per_user_selects_and_calibrates_on_all_of_them(tmp_path):
    """valid_per_user = 3: the epochs are chosen and the fusion fitted on
    three validation events per user, and the run reloads with them."""
    from genre_serve.train.update import run_events

    ds = train_synthetic(tmp_path, num_users=80, num_items=120, seed=2, epochs=2, refit=False, valid_per_user=3)
    run = load_run(tmp_path)
    assert len(run_events(run)) == len(ds.interactions)  # an update reads every one back
    valid = run.split.stage("valid")
    users = np.unique(valid.users)
    assert run.config.valid_per_user == 3 and len(valid.targets) == 3 * users.size
    fit = run.meta["fusion_calibration"]
    assert fit["valid_users"] == users.size and fit["valid_events"] == len(valid.targets)
    assert all(np.isfinite(h["valid_ndcg@10"]) for h in run.meta["retrieval_history"])
