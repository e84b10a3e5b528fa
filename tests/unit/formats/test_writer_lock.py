"""One writer at a time: the repository's writer lock."""

import subprocess
import sys
import threading
import time

import pytest

from genre_serve.errors import RepositoryBusyError
from genre_serve.formats import repository as fmt


def test_a_second_writer_waits_for_the_first(tmp_path):
    order = []

    def writer(name: str, hold_s: float) -> None:
        with fmt.writer_lock(tmp_path, timeout_s=10):
            order.append(f"{name} in")
            time.sleep(hold_s)
            order.append(f"{name} out")

    first = threading.Thread(target=writer, args=("a", 0.5))
    first.start()
    time.sleep(0.1)
    writer("b", 0)
    first.join()
    assert order == ["a in", "a out", "b in", "b out"]


def test_a_writer_that_cannot_wait_is_told_who_holds_the_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from genre_serve.formats import repository as fmt\n"
                               f"with fmt.writer_lock({str(tmp_path)!r}):\n"
                               "    print('held', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RepositoryBusyError, match=f"pid {holder.pid}.*--lock-timeout-s"), \
                fmt.writer_lock(tmp_path, timeout_s=0):
            pass
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the dead holder's lock: the next writer gets it at once.
    with fmt.writer_lock(tmp_path, timeout_s=0):
        pass
