"""`genre-serve update` (new interactions -> a gated candidate -> rolled out)
and `genre-serve rollback` (a kept version served again)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genre_serve.cli.common import EXIT_OK, Subparsers, add_keep_versions, add_url, roll_out
from genre_serve.errors import UsageError

EXIT_REJECTED = 3  # the gate rejected the candidate: nothing was exported


def register(commands: Subparsers) -> None:
    from genre_serve.formats.update_report import UpdateSettings

    d = UpdateSettings()
    u = commands.add_parser(
        "update", help="fine-tune a run on new interactions, gate it against the run, roll it out",
        description="Reads a feedback log, fine-tunes a candidate from RUN_DIR's weights on all but its newest "
                    "events, scores candidate and parent on those newest events, and (promoted, with "
                    "--model-repository) exports the candidate and loads it into the servers given. "
                    f"Exit status {EXIT_REJECTED}: the gate rejected the candidate (kept in --out, never exported).")
    u.add_argument("run_dir", type=Path, help="the run to update (a `train` or an earlier `update` run)")
    u.add_argument("--interactions", type=Path, required=True,
                   help="the feedback log: a CSV/Parquet file or a directory of them (columns user_id, item_id, "
                        "timestamp[, event, scenario, version, rating])")
    u.add_argument("--items", type=Path,
                   help="CSV/Parquet item_id,title[,text,tags]: items the log names that the run lacks "
                        "(ids already in the catalog are skipped)")
    u.add_argument("--out", type=Path, required=True, help="the candidate's run directory (written either way)")
    u.add_argument("--max-regression", type=float, default=d.max_regression,
                   help="relative NDCG@10 the candidate may lose against the run on the gate slice and still be "
                        "promoted (default: %(default)s)")
    u.add_argument("--holdout-fraction", type=float, default=d.holdout_fraction,
                   help="the newest share of the log's events the gate scores, never trained on "
                        "(default: %(default)s)")
    u.add_argument("--epochs", type=int, default=d.epochs, help="fine-tuning epochs (default: %(default)s)")
    u.add_argument("--replay", type=_replay, default="all" if d.replay_all else d.replay,
                   help="users without new events replayed per user with new events, against forgetting, or "
                        "'all' (every one of them) (default: %(default)s)")
    u.add_argument("--als-iterations", type=int, default=d.als_iterations,
                   help="ALS iterations refining every CF row on all the data, started from the run's rows "
                        "(0: none; default: %(default)s)")
    u.add_argument("--lr-scale", type=float, default=d.lr_scale,
                   help="fine-tuning learning rates, relative to the run's (default: %(default)s)")
    u.add_argument("--interpolation", type=float, default=d.interpolation, metavar="BETA",
                   help="the candidate's weights: the run's plus BETA x (fine-tuned - run's), in (0, 1]; below 1 "
                        "an update drifts less from what served well (default: %(default)s)")
    u.add_argument("--distill", type=float, default=d.distill, metavar="WEIGHT",
                   help="pull the fine-tuned model's softmax towards the run's on the replayed users' positions "
                        "(knowledge distillation, against forgetting; attention encoder; default: %(default)s, off)")
    u.add_argument("--distill-users", choices=["replayed", "all"], default=d.distill_users,
                   help="whose positions --distill applies to (default: %(default)s)")
    u.add_argument("--ranker-epochs", type=int, default=d.ranker_epochs,
                   help="also fine-tune the ranker this many epochs (default: %(default)s, the run's ranker)")
    u.add_argument("--refit-on-slice", action=argparse.BooleanOptionalAction, default=d.refit_on_slice,
                   help="once promoted, fine-tune again with the gate slice included, and export that "
                        "(default: on; train's deployment fit does the same with its held-out interactions)")
    u.add_argument("--seed", type=int, default=d.seed)
    u.add_argument("--model-repository", type=Path,
                   help="export a promoted candidate here as a new version")
    add_url(u)
    add_keep_versions(u)
    u.add_argument("--dry-run", action="store_true", help="evaluate and report; export nothing")
    u.add_argument("--report", type=Path, help="also write the JSON report here (it is always in --out)")
    u.add_argument("--quiet", action="store_true", help="no progress bars")
    u.set_defaults(handler=cmd_update)

    r = commands.add_parser("rollback", help="serve a kept earlier version again (as a new version)")
    r.add_argument("target", type=Path, help="a model repository, or a run directory with model_repository/")
    r.add_argument("--to", type=int, required=True, metavar="VERSION", help="the version to put back")
    add_url(r)
    add_keep_versions(r)
    r.set_defaults(handler=cmd_rollback)


def _replay(text: str) -> float | str:
    if text.strip().lower() == "all":
        return "all"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number or 'all', got {text!r}") from None


def cmd_update(args) -> int:
    import dataclasses

    from genre_serve.export.repository import export_run
    from genre_serve.formats.update_report import REPORT_FILE, UpdateSettings
    from genre_serve.train.update import update

    if args.url and not args.model_repository:
        raise UsageError("--url goes with --model-repository (the repository the servers load from)")
    settings = UpdateSettings(holdout_fraction=args.holdout_fraction, max_regression=args.max_regression,
                              epochs=args.epochs, ranker_epochs=args.ranker_epochs,
                              replay_all=args.replay == "all",
                              replay=UpdateSettings.replay if args.replay == "all" else args.replay,
                              als_iterations=args.als_iterations, lr_scale=args.lr_scale,
                              interpolation=args.interpolation, refit_on_slice=args.refit_on_slice,
                              distill=args.distill, distill_users=args.distill_users, seed=args.seed)
    try:
        settings.check()
    except ValueError as e:
        raise UsageError(str(e)) from None
    result = update(args.run_dir, args.interactions, args.out, args.items, settings, progress=not args.quiet)
    log = result.report["log"]
    changes = result.report["changes"]
    dropped = ", ".join(f"{n} {reason}" for reason, n in log["dropped"].items()) or "none"
    print(f"log: {log['rows_read']} rows in {len(log['files']['files'])} file(s); {log['events']} events used "
          f"({log['late_events']} late), {log['new_users']} new users, {log['new_items']} new items; "
          f"dropped: {dropped}")
    print(f"fine-tuned on {changes['trained_events']} events ({changes['updated_users']} users updated, "
          f"{changes['replayed_users']} replayed) in {changes['seconds']:.0f} s")
    print(result.gate.table())
    rollout = None
    if not result.promoted:
        print(f"candidate kept in {result.out}, not exported")
    elif args.dry_run:
        print(f"--dry-run: candidate in {result.out}, not exported")
    elif args.model_repository:
        exported = export_run(result.out, args.model_repository, keep_versions=args.keep_versions,
                              lock_timeout_s=args.lock_timeout_s)
        print(f"exported version {exported.version} to {exported.repository}")
        roll_out(args.url, exported.version, exported.repository)
        rollout = {"repository": str(exported.repository), "version": exported.version,
                   "servers": list(args.url or [])}
    else:
        print(f"promoted: {result.out} (export it, or give --model-repository)")
    report = dict(result.report, rollout=rollout, dry_run=args.dry_run,
                  settings=dataclasses.asdict(settings))
    text = json.dumps(report, indent=2)
    (result.out / REPORT_FILE).write_text(text)
    if args.report:
        args.report.write_text(text)
    return EXIT_OK if result.promoted else EXIT_REJECTED


def cmd_rollback(args) -> int:
    from genre_serve.export.repository import rollback
    from genre_serve.formats.repository import resolve_repository

    repo = resolve_repository(args.target)
    version = rollback(repo, args.to, args.keep_versions, args.lock_timeout_s)
    print(f"version {args.to} is back as version {version} of {repo}")
    roll_out(args.url, version, repo)
    return EXIT_OK
