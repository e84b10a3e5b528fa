"""`genre-serve train --nproc 2`: real torchrun, two processes, DDP over gloo;
the run it writes loads, exports and serves."""

import json
import subprocess
import sys

import numpy as np
import pytest

from genre_serve.client import GenreClient
from genre_serve.export.repository import export_run
from genre_serve.formats.run_dir import load_run
from genre_serve.serving.launcher import TritonServer
from genre_serve.train.distributed import Ranks
from tests_support import SMALL_TRAIN_CONFIG

pytestmark = pytest.mark.triton


def small_config_toml(path):
    model = SMALL_TRAIN_CONFIG["model"]
    top = "\n".join(f"{k} = {v}" for k, v in SMALL_TRAIN_CONFIG.items() if k != "model")
    path.write_text(top + "\n[model]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in model.items()) + "\n")
    return path


def test_two_process_training_writes_a_run_that_loads_exports_and_serves(tmp_path):
    config = small_config_toml(tmp_path / "small.toml")
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "genre_serve.cli", "train", "--synthetic", "--nproc", "2",
                           "--config", str(config), "--quiet", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)  # not the source tree
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 training processes" in done.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["processes"] == 2
    assert meta["served_weights"] == "refit"  # both stages ran distributed
    valid = [h["valid_ndcg@10"] for h in meta["retrieval_history"]]
    assert len(valid) == SMALL_TRAIN_CONFIG["epochs"] and max(valid) > 0
    run = load_run(out)
    assert np.isfinite(run.model.items.cf.weight.detach().numpy()).all()
    repo = tmp_path / "repo"
    export_run(out, repo)
    history = ["i1", "i2", "i3"]
    with TritonServer(repo) as server, GenreClient(server.http_url) as client:
        answer = [r.item_id for r in client.recommend(history, 5)]
    assert len(answer) == 5 and not set(answer) & set(history)


def test_each_rank_takes_its_rows_of_a_batch_and_weights_its_loss_so_that_ddp_averages_to_the_batch_mean():
    x = np.random.default_rng(0).random(7)  # per-row losses of one global batch
    for world in (1, 2, 3):
        shares = [Ranks(r, world).share(np.arange(x.size)) for r in range(world)]
        assert sorted(np.concatenate([m for m, _ in shares])) == list(range(x.size))
        # DDP's gradient is the mean over ranks of each rank's (weighted) loss.
        assert np.mean([w * x[m].mean() for m, w in shares]) == pytest.approx(x.mean())
    rows, weight = Ranks(2, 3).share(np.arange(2))  # a rank without rows still runs the step, at weight 0
    assert rows.size == 1 and weight == 0.0


def test_the_torchrun_command_carries_every_train_option_but_nproc():
    from genre_serve.cli import build_parser
    from genre_serve.cli.train import torchrun_command

    args = build_parser().parse_args(["train", "--synthetic", "--nproc", "2", "--seed", "0", "--epochs", "3",
                                      "--no-refit", "--quiet", "--config", "c.toml", "--out", "o"])
    command = torchrun_command(args)
    assert command[command.index("-m", 3):][:2] == ["-m", "genre_serve.train"]
    passed = command[command.index("genre_serve.train") + 1:]
    assert sorted(passed) == sorted(["--synthetic", "--seed", "0", "--epochs", "3", "--no-refit", "--quiet",
                                     "--config", "c.toml", "--out", "o"])
    assert "--nproc_per_node=2" in command and "--nproc" not in passed
