"""softmax_items = "trained": the retrieval softmax over the items with a
training interaction only, checked against the whole-catalog loss with the
other items masked out, for both encoders' losses."""

import dataclasses

import numpy as np
import torch

import genre_serve.train.trainer as T
from genre_serve.config import TrainConfig
from genre_serve.data.split import sequences_split
from genre_serve.models.genre import GenreModel, ModelConfig, right_align
from genre_serve.models.sequence import training_windows

NUM_ITEMS = 30
SEQUENCES = [np.array([0, 3, 5, 2, 9, 11]), np.array([1, 4, 2, 6, 7, 8, 12]), np.array([13, 14, 3])]


def split_and_model(encoder: str):
    split = sequences_split(SEQUENCES, [np.arange(len(s)) % 2 for s in SEQUENCES],
                            [np.arange(len(s)) for s in SEQUENCES], NUM_ITEMS)
    cfg = ModelConfig(dim=8, hidden=16, max_history=6, short_len=3, ranker_hidden=(8,), dropout=0.0, encoder=encoder)
    torch.manual_seed(0)
    return split, GenreModel(NUM_ITEMS, 2, torch.randn(NUM_ITEMS, 12), cfg).eval()


def test_the_catalog_is_every_item_or_the_trained_ones():
    split, _ = split_and_model("attention")
    assert T.softmax_catalog(split, TrainConfig()) is None
    trained = T.softmax_catalog(split, TrainConfig(softmax_items="trained"))
    assert trained.tolist() == sorted(set(np.concatenate(SEQUENCES).tolist()))


def test_the_attention_loss_over_the_trained_items_is_the_full_loss_with_the_rest_masked(monkeypatch):
    split, model = split_and_model("attention")
    cfg = TrainConfig(softmax_items="trained")
    catalog = T.softmax_catalog(split, cfg)
    untrained = np.setdiff1d(np.arange(NUM_ITEMS), catalog.numpy())
    hist_lists = [s[:-1] for s in SEQUENCES]
    hist = right_align(hist_lists, model.cfg.max_history)
    scen, target = torch.tensor([0, 1, 0]), torch.tensor([int(s[-1]) for s in SEQUENCES])
    got = T.retrieval_loss(model, hist, scen, target, hist_lists, cfg, None, catalog)
    full = T.retrieval_loss(model, hist, scen, target, hist_lists, cfg, None)
    cells = T.history_cells

    def masked(lists):
        rows, cols = cells(lists)
        return (np.concatenate([rows, np.repeat(np.arange(len(lists)), untrained.size)]),
                np.concatenate([cols, np.tile(untrained, len(lists))]))

    monkeypatch.setattr(T, "history_cells", masked)
    want = T.retrieval_loss(model, hist, scen, target, hist_lists, cfg, None)
    torch.testing.assert_close(got, want)
    assert full.item() > want.item()  # the untrained items did compete in the full softmax


def test_the_sequential_loss_over_the_trained_items_is_the_full_loss_with_the_rest_masked(monkeypatch):
    split, model = split_and_model("transformer")
    cfg = dataclasses.replace(TrainConfig(softmax_items="trained", target_window=1), bf16="off")
    catalog = T.softmax_catalog(split, cfg)
    untrained = torch.from_numpy(np.setdiff1d(np.arange(NUM_ITEMS), catalog.numpy()))
    targets = T.SequenceTargets(split, 1)
    users = np.arange(len(SEQUENCES))
    windows, ends = training_windows(SEQUENCES, model.cfg.max_history + 1)
    got = T.sequence_retrieval_loss(model, targets, users, windows, ends, cfg, None, catalog)
    exclusion = T.prefix_exclusion

    def masked(inputs, rows, cols):
        p, item = exclusion(inputs, rows, cols)
        p = torch.cat([p, torch.arange(rows.numel()).repeat_interleave(untrained.numel())])
        item = torch.cat([item, untrained.repeat(rows.numel())])
        order = torch.argsort(p, stable=True)
        return p[order], item[order]

    monkeypatch.setattr(T, "prefix_exclusion", masked)
    want = T.sequence_retrieval_loss(model, targets, users, windows, ends, cfg, None)
    torch.testing.assert_close(got, want)
