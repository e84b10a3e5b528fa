"""The evaluation report: typed rows, the printed table, and the JSON document
(whose keys, e.g. ``"NDCG@10 / most-popular ci95"``, are what
``genre-serve evaluate --json`` has always written)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

COLUMNS = ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20", "HitRate@10", "MRR", "AUC")
Interval = tuple[float, float]


@dataclass(frozen=True)
class MethodRow:
    """One method on the stage's requests."""

    metrics: dict[str, float]  # metrics.summarize: Recall@K, NDCG@K, HitRate@10, MRR, AUC, users
    ndcg10_vs_most_popular: float  # NDCG@10 over most-popular's
    ndcg10_ci95: Interval  # bootstrap over the users
    ndcg10_vs_most_popular_ci95: Interval  # the ratio's, paired

    def to_dict(self) -> dict[str, Any]:
        return {**self.metrics, "NDCG@10 / most-popular": self.ndcg10_vs_most_popular,
                "NDCG@10 ci95": self.ndcg10_ci95, "NDCG@10 / most-popular ci95": self.ndcg10_vs_most_popular_ci95}


@dataclass(frozen=True)
class ColdStartRow:
    """One method on the (user, held-out item) pairs."""

    recall20: float  # over the full catalog
    pairs: int
    recall20_ci95: Interval
    recall20_among_held_out: float  # ranked among the held-out items only
    recall20_among_held_out_ci95: Interval | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"Recall@20": self.recall20, "pairs": self.pairs, "Recall@20 ci95": self.recall20_ci95,
                               "Recall@20 among held-out": self.recall20_among_held_out}
        if self.recall20_among_held_out_ci95 is not None:
            doc["Recall@20 among held-out ci95"] = self.recall20_among_held_out_ci95
        return doc


@dataclass(frozen=True)
class EvaluationReport:
    run: str
    dataset: str | None
    stage: str
    protocol: str
    users: int
    items: int
    cold_items: int
    methods: dict[str, MethodRow]
    cold_start: dict[str, ColdStartRow] = field(default_factory=dict)
    baseline_seconds: dict[str, float] = field(default_factory=dict)
    # "fused + ranker" over each peer (SASRec+, EASE): NDCG@10 ratio and its paired interval.
    served_vs_peers: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: str = "selection"  # the weights scored (always the selection model's)
    served_weights: str = "selection"  # what export serves: "selection" or "refit" (on every interaction)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "dataset": self.dataset, "stage": self.stage, "protocol": self.protocol,
                "users": self.users, "items": self.items, "cold_items": self.cold_items,
                "methods": {name: row.to_dict() for name, row in self.methods.items()},
                "cold_start": {name: row.to_dict() for name, row in self.cold_start.items()},
                "baseline_seconds": self.baseline_seconds, "served_vs_peers": self.served_vs_peers,
                "weights": self.weights, "served_weights": self.served_weights}


def format_table(report: EvaluationReport) -> str:
    w = max(24, *(len(n) for n in report.methods))
    head = f"{'method':<{w}}" + "".join(f"{c:>11}" for c in COLUMNS) + f"{'vs pop':>8}  {'95% interval':<14}"
    lines = [
        f"{report.dataset}: {report.stage} split, {report.users} users, {report.items} items ({report.protocol})",
        head,
        "-" * len(head),
    ]
    for name, r in report.methods.items():
        lines.append(f"{name:<{w}}" + "".join(f"{r.metrics[c]:>11.4f}" for c in COLUMNS)
                     + f"{r.ndcg10_vs_most_popular:>7.2f}x  {_interval(r.ndcg10_vs_most_popular_ci95, 2)}")
    lines.append("(vs pop: NDCG@10 over most-popular's; its 95% interval from resampling the test users, paired)")
    for peer, v in report.served_vs_peers.items():
        lines.append(f"fused + ranker vs {peer}: NDCG@10 {v['NDCG@10 ratio']:.3f}x {_interval(v['ci95'], 3)}")
    lines.append("scored: the selection-stage model (trained without these held-out interactions); "
                 + ("export serves a deployment fit of it on every interaction" if report.served_weights == "refit"
                    else "export serves this model"))
    if report.cold_start:
        pairs = next(iter(report.cold_start.values())).pairs
        lines.append("")
        lines.append(f"cold start: the stage's {report.cold_items} of the items held out of training entirely, "
                     f"{pairs} (user, item) pairs; Recall@20 over the full catalog, and among the held-out "
                     f"items only (no information: {min(1.0, 20 / max(report.cold_items, 1)):.4f})")
        for name, c in report.cold_start.items():
            lines.append(f"  {name:<28} Recall@20 {c.recall20:.4f} {_interval(c.recall20_ci95)}"
                         f"   among held-out {c.recall20_among_held_out:.4f} "
                         f"{_interval(c.recall20_among_held_out_ci95)}")
        lines.append("  (95% intervals: bootstrap over the (user, item) pairs)")
    return "\n".join(lines)


def _interval(ci: Interval | None, digits: int = 4) -> str:
    if ci is None or any(np.isnan(v) for v in ci):
        return ""
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
