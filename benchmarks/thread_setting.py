"""What a call to ``torch.set_num_threads`` costs afterwards: small operations per second.

``python benchmarks/thread_setting.py [--threads 2] [--seconds 8]`` runs, in fresh processes
one after the other, a loop of ``torch.cos`` on 4 x 128 numbers (the size of a sampling step's
small tensors) for ``--seconds``: once untouched, once right after
``torch.set_num_threads(threads)`` with the value torch already has, and once after
``set_num_threads(1)``; it prints the operations of each second and how many took over 1 ms.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

LOOP = """
import sys, time, torch
x = torch.randn(4, 128)
if {threads} > 0:
    torch.set_num_threads({threads})
start = last = time.perf_counter()
n = slow = 0
while time.perf_counter() - start < {seconds}:
    a = time.perf_counter(); torch.cos(x); b = time.perf_counter()
    n += 1; slow += (b - a) > 1e-3
    if b - last >= 1:
        print(f"  second {{b - start:4.1f}}: {{n:7d}} operations, {{slow}} over 1 ms", flush=True)
        n = slow = 0; last = b
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    for label, threads in (
        ("untouched", 0),
        (f"after set_num_threads({args.threads})", args.threads),
        ("after set_num_threads(1)", 1),
    ):
        print(label, flush=True)
        code = LOOP.format(threads=threads, seconds=args.seconds)
        subprocess.run([sys.executable, "-c", code], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
