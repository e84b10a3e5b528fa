"""Which genre_recommend_batch requests Triton's dynamic batcher puts together:
8 concurrent one-user requests, with and without the optional SCENARIO and
ALPHA inputs, against one instance with a 50 ms batching window; the server's
statistics say how many executions answered them.

    python benchmarks/optional_inputs_batching.py --run-dir runs/quickstart
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, default=Path("runs/quickstart"))
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/optional_inputs_batching.json"))
    args = ap.parse_args(argv)

    import tritonclient.http as th

    from genre_serve.client.core import infer_inputs, named_tensors, recommend_batch_arrays
    from genre_serve.export import model_configs as mc
    from genre_serve.export.repository import export_run
    from genre_serve.formats import repository as fmt
    from genre_serve.formats.run_dir import load_run
    from genre_serve.serving.launcher import TritonServer

    run = load_run(args.run_dir)
    histories = [run.items.external(h) for h in run.split.stage("test").histories[:8]]
    scenario = run.scenarios[0]
    cases = {"none sends SCENARIO": [None] * 8, "all send SCENARIO": [scenario] * 8,
             "every other sends SCENARIO": [scenario, None] * 4, "every other sends ALPHA": [None, 0.5] * 4}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        export_run(args.run_dir, repo, serving=mc.ServingConfig(max_queue_delay_us=50_000, batch_instances=1))
        with TritonServer(repo) as server:
            client = th.InferenceServerClient(server.http_url, concurrency=16)
            outputs = [th.InferRequestedOutput(n) for n in (fmt.ITEM_IDS, fmt.SCORES)]

            def counts() -> tuple[int, int]:
                stats = client.get_inference_statistics(fmt.RECOMMEND_BATCH)["model_stats"][0]
                return int(stats["inference_count"]), int(stats["execution_count"])

            for label, extras in cases.items():
                before = counts()
                pending = []
                for history, extra in zip(histories, extras):
                    arrays = recommend_batch_arrays([history], 10, extra if isinstance(extra, str) else None,
                                                    extra if isinstance(extra, float) else None)
                    pending.append(client.async_infer(fmt.RECOMMEND_BATCH, infer_inputs(th, named_tensors(arrays)),
                                                      outputs=outputs))
                for p in pending:
                    p.get_result()
                after = counts()
                rows[label] = {"requests": after[0] - before[0], "executions": after[1] - before[1]}
            client.close()
    print(f"{'case':<30} {'requests':>9} {'executions':>11}")
    for label, r in rows.items():
        print(f"{label:<30} {r['requests']:>9} {r['executions']:>11}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cases": rows}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
