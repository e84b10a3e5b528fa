"""Data-parallel training over several processes: PyTorch DDP, started by torchrun.

    torchrun --standalone --nproc_per_node 2 -m genre_serve.train --dataset movielens-small --out runs/ddp
    genre-serve train --nproc 2 ...            (the same, torchrun started for you)

Every rank holds the whole model and the whole data set (both are small next
to a machine's memory; the catalog-wide softmax needs every item vector on
every rank anyway). What is divided is the work:

- each step's batch: the global batch (batch_size / sequence_batch_size) is
  drawn as in one process, from one permutation shared by all ranks, and each
  rank takes every world-th row of it. DDP averages the gradients, each rank's
  loss weighted by its share of the rows, so a step is the single process's
  step on the same rows, the learning-rate schedule and number of steps
  unchanged;
- validation users: each rank scores a shard, the NDCG sum is all-reduced, so
  every rank takes the same early-stopping decision;
- the item-text embedding pass (when the vector cache is cold).

One rank (rank 0) writes the run. Steps that are not sharded (the ALS warm
start, the fusion calibration) run on every rank and rank 0's result is
broadcast, so the replicas cannot drift apart.

Backend: gloo. The trainer keeps its tensors on the CPU (it does on a GPU
host too), and NCCL reduces only CUDA tensors.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

BACKEND = "gloo"


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (world 1: alone)."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This rank's rows of `rows` (every world-th, from its rank on)."""
        return rows[self.rank :: self.world] if self.active else rows

    def share(self, rows: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's rows of one global batch and the weight of its loss
        (rows * world / global rows: DDP's gradient mean is then the batch's).
        A rank left without rows takes one at weight 0: every rank must run
        each backward pass."""
        if not self.active:
            return rows, 1.0
        mine = self.shard(rows)
        if not mine.size:
            return rows[:1], 0.0
        return mine, mine.size * self.world / rows.size

    def sum(self, values) -> np.ndarray:
        """Element-wise sum over ranks (float64)."""
        t = torch.as_tensor(np.asarray(values, np.float64))
        if self.active:
            dist.all_reduce(t)
        return t.numpy()

    def mean_of_rows(self, row_values: np.ndarray, total_rows: int) -> float:
        """The mean over all ranks' rows, given this rank's rows' values."""
        return float(self.sum(np.sum(row_values, dtype=np.float64))) / max(total_rows, 1)

    @torch.no_grad()
    def broadcast(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers, to every rank."""
        if self.active:
            for t in module.state_dict().values():
                dist.broadcast(t, 0)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def wrap(self, objective: nn.Module) -> nn.Module:
        """`objective` under DDP (its trainable parameters' gradients averaged
        over ranks), or as it is alone. Parameters a loss leaves unused (the
        ranker's during retrieval) must be frozen by the caller (trainable_only)."""
        if not self.active:
            return objective
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(objective)


SINGLE = Ranks()


def current() -> Ranks:
    """The ranks of the initialised process group, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return SINGLE


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def process_group():
    """Joins the process group torchrun set up (its environment), for the
    block; a plain process runs alone."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield current()
        return
    dist.init_process_group(BACKEND)
    try:
        yield current()
    finally:
        dist.destroy_process_group()


class Objective(nn.Module):
    """A loss of `model` as a module of its own, so that DDP can wrap it: the
    trainer's losses call the model's parts (tables, encoder, ranker), not
    its forward."""

    def __init__(self, model: nn.Module, loss: Callable[..., torch.Tensor]):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.loss(self.model, *args, **kwargs)


@contextlib.contextmanager
def trainable_only(params: list[torch.Tensor], model: nn.Module):
    """Only `params` require gradients inside the block: wrapped there, DDP reduces only those."""
    keep = {id(p) for p in params}
    before = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in before:
        p.requires_grad_(id(p) in keep)
    try:
        yield
    finally:
        for p, flag in before:
            p.requires_grad_(flag)


def encode_texts_sharded(texts: list[str], path: str | None = None, *, max_length: int,
                         progress: bool = True) -> np.ndarray:
    """The item text vectors (models/text_encoder.py), the encoding divided
    between the training processes when the cache is cold: each encodes every
    world-th batch, the shards are summed (each row is non-zero on one rank
    only), each fills its cache."""
    from genre_serve.models.text_encoder import encode_texts, save_text_vectors, text_vectors_cache
    from genre_serve.text import default_encoder_path

    ranks = current()
    if not ranks.active:
        return encode_texts(texts, path, max_length=max_length, progress=progress)
    cached = text_vectors_cache(texts, path or default_encoder_path(), max_length)
    # Every rank takes the same branch: the cache is used if every rank has it
    # (ranks on other machines may not share this one's).
    if ranks.sum(float(not cached.exists())) == 0:
        return np.load(cached)
    part = encode_texts(texts, path, max_length=max_length, progress=progress, shard=(ranks.rank, ranks.world),
                        use_cache=False)
    vectors = torch.from_numpy(part)
    dist.all_reduce(vectors)
    out = vectors.numpy()
    save_text_vectors(cached, out)  # each rank its own cache (atomic: ranks sharing one are safe)
    return out
