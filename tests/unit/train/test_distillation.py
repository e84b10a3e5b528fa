"""The update's distillation (UpdateSettings.distill): the fine-tuned model's
softmax pulled towards a frozen copy of its starting weights, on the rows it
is given, checked against the dense KL divergence computed by hand."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from unit.train.test_softmax_catalog import SEQUENCES, split_and_model

import genre_serve.train.trainer as T
from genre_serve.config import TrainConfig
from genre_serve.formats.update_report import UpdateSettings
from genre_serve.models.genre import right_align
from genre_serve.train.update import fine_tune_retrieval


def batch(model):
    hist_lists = [s[:-1] for s in SEQUENCES]
    hist = right_align(hist_lists, model.cfg.max_history)
    return hist, torch.tensor([0, 1, 0]), torch.tensor([int(s[-1]) for s in SEQUENCES]), hist_lists


def dense_kl(student, teacher, hist_lists, rows, aux):
    """Sum over fused, CF and content scores (weights 1, aux, aux) of the mean KL(teacher || student) on `rows`."""
    hist, scen, _, _ = batch(student)
    total = 0.0
    outs = []
    for m in (student, teacher):
        cf, ct = m.items.padded_tables()
        u_cf, u_ct = m.encode_users(hist, scen)
        s_cf, s_ct = u_cf @ cf[1:].T, u_ct @ ct[1:].T
        a = m.alpha(scen).unsqueeze(1)
        outs.append((a * s_cf + (1 - a) * s_ct, s_cf, s_ct))
    hidden = torch.zeros_like(outs[0][0], dtype=torch.bool)
    for r, h in enumerate(hist_lists):
        hidden[r, torch.as_tensor(h)] = True
    for s, t, w in zip(outs[0], outs[1], (1.0, aux, aux)):
        log_s = F.log_softmax(s.masked_fill(hidden, -1e9), 1)[rows]
        log_t = F.log_softmax(t.masked_fill(hidden, -1e9), 1)[rows]
        total = total + w * (log_t.exp() * (log_t - log_s)).sum(1).mean()
    return total


def perturbed(model, only: str = ""):
    """A copy with noise on the parameters whose names start with `only`."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in other.named_parameters():
            if name.startswith(only):
                p.add_(0.3 * torch.randn_like(p))
    return other


def test_a_teacher_with_the_models_own_weights_adds_nothing():
    _, model = split_and_model("attention")
    cfg = TrainConfig()
    hist, scen, target, hist_lists = batch(model)
    plain = T.retrieval_loss(model, hist, scen, target, hist_lists, cfg, None)
    with_teacher = T.retrieval_loss(model, hist, scen, target, hist_lists, cfg, None, None, T.Teacher(model, 5.0))
    torch.testing.assert_close(with_teacher, plain)


@pytest.mark.parametrize("rows", [None, [True, False, True]])
def test_the_distillation_term_is_the_weighted_kl_divergence_on_the_distilled_rows(rows):
    _, model = split_and_model("attention")
    teacher_weights = perturbed(model)
    cfg = TrainConfig()
    hist, scen, target, hist_lists = batch(model)
    mask = None if rows is None else torch.tensor(rows)
    plain = T.retrieval_loss(model, hist, scen, target, hist_lists, cfg, None)
    got = T.retrieval_loss(model, hist, scen, target, hist_lists, cfg, None, None,
                           T.Teacher(teacher_weights, 2.0), mask)
    picked = torch.ones(3, dtype=torch.bool) if mask is None else mask
    want = plain + 2.0 * dense_kl(model, teacher_weights, hist_lists, picked, cfg.aux_weight)
    torch.testing.assert_close(got, want)
    assert got.item() > plain.item()


def test_no_distilled_rows_leaves_the_loss_as_it_was():
    _, model = split_and_model("attention")
    cfg = TrainConfig()
    hist, scen, target, hist_lists = batch(model)
    plain = T.retrieval_loss(model, hist, scen, target, hist_lists, cfg, None)
    got = T.retrieval_loss(model, hist, scen, target, hist_lists, cfg, None, None, T.Teacher(perturbed(model), 1.0),
                           torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(got, plain)


def test_the_teacher_stays_frozen_while_the_student_trains():
    split, model = split_and_model("attention")
    teacher = T.Teacher(perturbed(model), 1.0)
    before = {n: p.clone() for n, p in teacher.model.named_parameters()}
    settings = UpdateSettings(epochs=2, distill=1.0, distill_users="all")
    history = fine_tune_retrieval(model, split, np.array([0, 1]), np.array([2]), TrainConfig(), settings,
                                  progress=False, teacher=teacher)
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)
    for n, p in teacher.model.named_parameters():
        torch.testing.assert_close(p, before[n])
        assert not p.requires_grad


def test_fine_tuning_pulls_the_student_towards_the_teacher():
    """Without the pull, fitting the targets moves the softmax far from the
    teacher's; with it, closer than where it started."""
    after = {}
    for weight in (0.0, 20.0):
        split, model = split_and_model("attention")
        teacher_weights = perturbed(model, "user.")  # what fine-tuning can move everywhere: the user encoder
        _, _, _, hist_lists = batch(model)
        rows = torch.ones(3, dtype=torch.bool)
        start = dense_kl(model, teacher_weights, hist_lists, rows, 0.5).item()
        settings = UpdateSettings(epochs=40, distill=weight, distill_users="all")
        fine_tune_retrieval(model, split, np.array([0, 1, 2]), np.zeros(0, np.int64), TrainConfig(lr=3e-2),
                            settings, progress=False, teacher=T.Teacher(teacher_weights, weight) if weight else None)
        after[weight] = dense_kl(model, teacher_weights, hist_lists, rows, 0.5).item()
    assert after[20.0] < 0.5 * start < after[0.0]


def test_distillation_is_refused_for_the_sequential_encoders_with_a_clear_message():
    split, model = split_and_model("transformer")
    with pytest.raises(ValueError, match="attention encoder only"):
        fine_tune_retrieval(model, split, np.array([0]), np.array([1]), TrainConfig(), UpdateSettings(distill=1.0),
                            progress=False, teacher=T.Teacher(model, 1.0))


@pytest.mark.parametrize("fields", [{"distill": -1.0}, {"distill_users": "everyone"}])
def test_bad_distillation_settings_are_refused(fields):
    with pytest.raises(ValueError, match="distill"):
        UpdateSettings(**fields).check()


def test_update_settings_take_exactly_the_configs_softmax_items_choices():
    """UpdateSettings spells the choices out (formats/ may not import config): kept equal to config.CHOICES."""
    from genre_serve.config import CHOICES

    for value in CHOICES["softmax_items"]:
        UpdateSettings(softmax_items=value).check()
    with pytest.raises(ValueError, match="softmax items"):
        UpdateSettings(softmax_items="some").check()
