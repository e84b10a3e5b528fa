"""`genre-serve quickstart`: built-in data -> train -> evaluate -> export -> serve -> query."""

from __future__ import annotations

from pathlib import Path

from genre_serve.cli.common import EXIT_OK, Subparsers, train_config
from genre_serve.cli.train import evaluate


def register(commands: Subparsers) -> None:
    q = commands.add_parser("quickstart", help="built-in data -> train -> evaluate -> export -> serve -> query")
    q.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="run directory (default: %(default)s)")
    q.add_argument("--epochs", type=int, default=None, help="override the training epochs")
    q.add_argument("--retrain", action="store_true", help="train again even if --out holds a finished run")
    q.set_defaults(handler=cmd_quickstart)


def cmd_quickstart(args) -> int:
    from genre_serve.client import GenreClient
    from genre_serve.data import load_builtin
    from genre_serve.export.repository import export_run
    from genre_serve.formats.run_dir import load_run
    from genre_serve.serving.launcher import TritonServer
    from genre_serve.train.trainer import train

    cfg = train_config(args)
    print("genre-serve quickstart: built-in MovieLens (ml-latest-small) -> train -> evaluate -> export -> serve "
          "-> query")
    out = args.out
    if args.retrain or not (out / "model.pt").exists():
        ds = load_builtin("movielens-small", cfg.data)
        print(f"[1/5] data: {ds.num_users} users, {ds.num_items} movies, {len(ds.interactions)} ratings")
        train(ds, cfg, out)
    else:
        print(f"[1/5] reusing the trained run in {out} (--retrain to train again)")
    print("[2/5] evaluating on the held-out last interaction of each user")
    evaluate(out, "test", with_baselines=False)
    repo = out / "model_repository"
    result = export_run(out, repo)
    print(f"[3/5] exported version {result.version} to {repo}")
    print("[4/5] starting tritonserver on 127.0.0.1 (free ports)")
    run = load_run(out)
    with TritonServer(repo) as server:
        print(f"      ready: HTTP {server.http_url}  gRPC {server.grpc_url}")
        test = run.split.stage("test")
        history = run.items.external(test.histories[0])
        titles = dict(zip(run.items.ids, run.titles, strict=True))
        with GenreClient(server.http_url) as client:
            recs = client.recommend(history, k=10, explain=True)
        print(f"[5/5] user {run.meta['users'][test.users[0]]} ({len(history)} movies) recently watched:")
        for i in history[-5:]:
            print(f"        {titles.get(i, i)}")
        print("      genre_serve recommends (and the watched movie each is closest to):")
        for rank, r in enumerate(recs, 1):
            because = f"because you watched {_short(titles.get(r.because, r.because))}" if r.because else ""
            print(f"  {rank:>3}. {_short(titles.get(r.item_id, r.item_id), 44):<44} {r.score:7.3f}  {because}")
    print(f"done. Serve it again with: genre-serve serve --model-repository {repo}")
    return EXIT_OK


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
