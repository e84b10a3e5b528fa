"""`genre-serve train` and `genre-serve evaluate`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from genre_serve.cli.common import EXIT_OK, Subparsers, add_data_args, load_dataset, train_config
from genre_serve.errors import UsageError


def register(commands: Subparsers) -> None:
    t = commands.add_parser("train", help="train a GENRE model into RUN_DIR")
    add_data_args(t)
    t.add_argument("--out", type=Path, required=True, help="the run directory to write")
    t.add_argument("--config", type=Path, help="a TOML file with [model], [data] tables and training keys")
    t.add_argument("--epochs", type=int, help="override the training epochs")
    t.add_argument("--seed", type=int, help="override the seed")
    t.add_argument("--no-refit", action="store_true",
                   help="serve the selection-stage model instead of refitting it on every interaction")
    t.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train in N processes (PyTorch DDP over gloo, started with torchrun; "
                        "the same as `torchrun --standalone --nproc_per_node N -m genre_serve.train ...`)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(handler=cmd_train, train_parser=t)

    e = commands.add_parser("evaluate", help="metrics of a run and the baselines on its split")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--json", type=Path, help="also write the report as JSON here")
    e.add_argument("--stage", choices=["test", "valid"], default="test")
    e.add_argument("--no-baselines", action="store_true", help="only most-popular and the GENRE variants")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(handler=cmd_evaluate)


def cmd_train(args) -> int:
    from genre_serve.train import distributed
    from genre_serve.train.trainer import train

    if args.nproc < 1:
        raise UsageError(f"--nproc: at least 1, got {args.nproc}")
    if args.nproc > 1 and not distributed.launched_by_torchrun():
        return run_torchrun(args)
    cfg = train_config(args)
    ds = load_dataset(args, cfg)
    with distributed.process_group() as ranks:
        say = print if ranks.main else (lambda *a, **k: None)
        say(f"data: {ds.name}: {ds.num_users} users, {ds.num_items} items, "
            f"{len(ds.interactions)} interactions ({ds.report.summary()})"
            + (f"; {ranks.world} training processes" if ranks.active else ""))
        out = train(ds, cfg, args.out, progress=not args.quiet)
    if ranks.main:
        meta = json.loads((out / "meta.json").read_text())
        best = max((h["valid_ndcg@10"] for h in meta["ranker_history"] or meta["retrieval_history"]), default=0)
        print(f"trained in {meta['seconds']['total']:.0f} s; best validation NDCG@10 {best:.4f}; run saved to {out}")
    return EXIT_OK


def torchrun_command(args) -> list[str]:
    """The torchrun command line that trains as `args` say in args.nproc processes on this machine:
    every option of the train parser given a value, but --nproc."""
    argv = []
    for action in args.train_parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest in ("help", "nproc") or value is None or value is False:
            continue
        argv += [action.option_strings[0]] if action.nargs == 0 else [action.option_strings[0], str(value)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
            "-m", "genre_serve.train", *argv]


def run_torchrun(args) -> int:
    """Starts torchrun (which starts the processes and ends them all if one fails) and waits for it."""
    import os
    import subprocess

    env = dict(os.environ)
    # torchrun would set 1 thread per process (and warn); share the cores out instead.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc)))
    command = torchrun_command(args)
    print(f"training in {args.nproc} processes: {' '.join(command[1:])}", flush=True)
    return subprocess.run(command, env=env).returncode


def evaluate(run_dir: Path, stage: str = "test", with_baselines: bool = True, progress: bool = True,
             json_path: Path | None = None) -> None:
    """Prints the evaluation table of a run (and writes its JSON)."""
    from genre_serve.evaluation.evaluate import evaluate_run
    from genre_serve.evaluation.report import format_table
    from genre_serve.formats.run_dir import load_run

    run = load_run(run_dir, weights="selection")  # the served weights may have trained on the split's test
    report = evaluate_run(run, stage, with_baselines=with_baselines, progress=progress)
    print(format_table(report))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_dict(), indent=2))
        print(f"wrote {json_path}")


def cmd_evaluate(args) -> int:
    evaluate(args.run_dir, args.stage, not args.no_baselines, not args.quiet, args.json)
    return EXIT_OK
