#!/usr/bin/python3
"""What one pass over a 1 MiB array costs on this machine, by how much other memory a
step touches between passes.

    /usr/bin/python3 bench/memory_passes.py [--repeats N]

align_step's largest arrays (the (32,32,4,64) activations, the attention weights) are
1 MiB of floats each, as large as one core's L2 on the machines we have measured, and a
step touches about 12 MB. This times NumPy adding two 1 MiB float arrays into a third
(read 2 MiB, write 1 MiB; as fast as xtgrad's own broadcast add alone) with N MiB of other
memory read and written between adds, and prints the median microseconds per add for
each N. When that time grows with N, the passes over a step's arrays run at the speed of
the memory behind L2, not of their arithmetic (bench/README.md, "Time outside the
products").
"""
import argparse
import statistics
import time

import numpy as np

FLOATS = 32 * 32 * 4 * 64  # 1 MiB


def median_us(other_mib, repeats):
    rng = np.random.default_rng(0)
    a = rng.random(FLOATS, dtype=np.float32)
    b = rng.random(FLOATS, dtype=np.float32)
    c = np.empty(FLOATS, np.float32)
    other = np.ones(other_mib * (1 << 18), np.float32)
    times = []
    for _ in range(repeats):
        other += 1.0  # the rest of a step: read and write other_mib MiB
        start = time.perf_counter()
        np.add(a, b, out=c)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=400)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    for other_mib in (0, 4, 8, 12, 16, 24):
        print(f"{other_mib:3d} MiB touched between adds: {median_us(other_mib, args.repeats):6.1f} us per 1 MiB add")


if __name__ == "__main__":
    main()
