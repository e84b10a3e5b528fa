"""Memory of a process tree (a tritonserver and its python-backend stubs),
read from /proc (Linux).

PSS, not RSS: a page shared by N processes (the memory-mapped item tables,
the libraries) counts 1/N in each, so the sum over a tree is what the tree
really holds; RSS would count a table mapped by 4 instances 4 times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TreeMemory:
    pss_mib: float
    rss_mib: float
    processes: int


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _rollup_kib(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            values[name.strip()] = int(parts[0])
    return values


def tree_memory(pid: int) -> TreeMemory:
    """PSS and RSS summed over `pid` and its descendants."""
    pss = rss = count = 0
    for p in descendants(pid):
        try:
            values = _rollup_kib(p)
        except OSError:
            continue
        pss, rss, count = pss + values.get("Pss", 0), rss + values.get("Rss", 0), count + 1
    return TreeMemory(pss / 1024, rss / 1024, count)
