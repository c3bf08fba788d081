"""How the benchmarks time a `smartchat` command: a fresh process, wall time and its own peak RSS.

The peak comes from the child's /proc VmHWM, read at exit: rusage's maxrss (wait4, getrusage)
would also count the pages of the large benchmark process the child was forked from.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CLI = """
import atexit, os
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(os.environ["SMARTCHAT_BENCH_PEAK"], "w").write(line.split()[1])
atexit.register(_peak)
from smartchat.cli import main
main()
"""


def run_smartchat(*args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, float, int]:
    """Run `smartchat ARGS` as its own process: (wall seconds, peak RSS in MB, exit code)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak-kb"
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _CLI, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "SMARTCHAT_BENCH_PEAK": str(peak_file)},
        )
        wall = time.perf_counter() - start
        if done.returncode not in ok:
            sys.exit(f"smartchat {' '.join(args)} failed: {done.stderr.decode()[-800:]}")
        return wall, int(peak_file.read_text()) / 1024, done.returncode
