"""The replica memory figures of bench_serving.py: PSS summed over a process tree."""

import os
import subprocess
import sys

import numpy as np

from genre_serve.serving.memory import descendants, tree_memory


def test_a_file_mapped_by_two_processes_counts_once_in_their_pss(tmp_path):
    path = tmp_path / "table.npy"
    np.save(path, np.ones(64 * 1024 * 1024 // 4, np.float32))  # 64 MiB
    reader = ("import numpy as np, sys, time; a = np.load(sys.argv[1], mmap_mode='r'); a.sum(); "
              "print('ready', flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               f"[subprocess.Popen([sys.executable, '-c', {reader!r}, sys.argv[1]]) for _ in range(2)];"
                               " time.sleep(60)", str(path)], stdout=subprocess.DEVNULL)
    try:
        import time

        deadline = time.time() + 30
        while len(descendants(parent.pid)) < 3 and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(3)  # both children have read the whole file
        memory = tree_memory(parent.pid)
        assert memory.processes == 3
        assert memory.rss_mib > 2 * 60  # each child's RSS holds the whole mapping
        assert memory.pss_mib < memory.rss_mib - 50  # PSS splits it between them
    finally:
        for pid in descendants(parent.pid)[1:]:
            os.kill(pid, 9)
        parent.kill()
        parent.wait()
