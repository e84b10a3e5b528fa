"""Steady background traffic against genre_recommend, with every request's
outcome kept: for watching a rollout or a restart happen under load.

Each worker thread owns one GenreClient (its own retry count and connection)
and sends requests back to back until stopped. Nothing is dropped from the
record: a request either answered (with the version that answered) or failed
with a typed error.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from genre_serve.client.client import GenreClient
from genre_serve.errors import GenreServeError, StuckWorkerError
from genre_serve.loadtest.sweep import percentiles_ms


@dataclass(frozen=True)
class Outcome:
    started: float  # time.monotonic()
    ended: float
    error: str | None  # the typed error's class name; None: answered
    version: int | None  # genre_recommend version that answered
    retries: int  # retries the client made for this request
    request: int  # index of the history sent
    answer: tuple[str, ...] = ()
    message: str = ""  # the error's message

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class BackgroundTraffic:
    """A context manager: traffic flows inside the ``with`` block.

    ``client_options`` go to each worker's GenreClient (timeout_s, retries,
    backoff_s, retry_overloaded, protocol).
    """

    def __init__(self, url: str, histories: Sequence[Sequence[str]], k: int = 10, concurrency: int = 4,
                 **client_options):
        if not histories:
            raise ValueError("histories: at least one")
        if concurrency < 1:
            raise ValueError("concurrency: at least 1")
        self.url, self.histories, self.k, self.concurrency = url, [list(h) for h in histories], k, concurrency
        self.client_options = {"retries": 0} | client_options
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _worker(self, w: int) -> None:
        with GenreClient(self.url, **self.client_options) as client:
            i = w
            while not self._stop.is_set():
                index = i % len(self.histories)
                history = self.histories[index]
                i += self.concurrency
                before, t0 = client.retried, time.monotonic()
                try:
                    recs, version = client.recommend_versioned(history, self.k)
                    outcome = Outcome(t0, time.monotonic(), None, version, client.retried - before, index,
                                      tuple(r.item_id for r in recs))
                except GenreServeError as e:
                    outcome = Outcome(t0, time.monotonic(), type(e).__name__, None, client.retried - before, index,
                                      message=str(e)[:300])
                    time.sleep(0.01)  # a refused connection must not become a busy loop
                self.outcomes.append(outcome)  # list.append is atomic under the GIL

    def start(self) -> BackgroundTraffic:
        self._threads = [threading.Thread(target=self._worker, args=(w,), daemon=True)
                         for w in range(self.concurrency)]
        for t in self._threads:
            t.start()
        return self

    def stop(self, join_timeout_s: float = 60.0) -> None:
        """Stops the workers; each finishes its request in flight first."""
        self._stop.set()
        deadline = time.monotonic() + join_timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = sum(t.is_alive() for t in self._threads)
        if stuck:
            raise StuckWorkerError(f"{stuck} traffic worker(s) still waiting after {join_timeout_s:.0f} s")

    def __enter__(self) -> BackgroundTraffic:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait_for_answers(self, count: int, since: float | None = None, timeout_s: float = 120.0) -> None:
        """Blocks until `count` requests started at or after `since` were answered."""
        deadline = time.monotonic() + timeout_s
        while sum(1 for o in list(self.outcomes) if o.ok and (since is None or o.started >= since)) < count:
            if time.monotonic() > deadline:
                raise StuckWorkerError(f"fewer than {count} answers within {timeout_s:.0f} s")
            time.sleep(0.05)

    def inconsistent_answers(self) -> int:
        """Answered requests whose answer differs from another answer to the
        same history (same model version): 0 when nothing was mixed up."""
        first: dict[tuple, tuple] = {}
        bad = 0
        for o in list(self.outcomes):
            if o.ok:
                key = (o.version, o.request)
                bad += first.setdefault(key, o.answer) != o.answer
        return bad

    def summary(self, since: float | None = None) -> dict:
        """Counts and latencies (of requests started at or after `since`)."""
        chosen = [o for o in self.outcomes if since is None or o.started >= since]
        ok = [o for o in chosen if o.ok]
        return {
            "requests": len(chosen),
            "ok": len(ok),
            "errors": dict(Counter(o.error for o in chosen if not o.ok)),
            "recovered_after_retries": sum(1 for o in ok if o.retries > 0),
            "versions": dict(Counter(o.version for o in ok)),
            "latency_ms": percentiles_ms([o.seconds for o in ok]),
            "slowest_request_s": max((o.seconds for o in chosen), default=0.0),
        }
