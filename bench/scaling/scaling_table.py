#!/usr/bin/env python3
"""The tables of docs/scaling.md from the measured figures (python3, standard library only):

    python3 bench/scaling/scaling_table.py bench/scaling/scaling_measurements.jsonl [--latency-us 25]

The input is bench/scaling/scaling_measure.sh's output: xtgrad-ddp-bench's JSON lines (and uptime
lines). It prints, in Markdown:
1. The runs on this machine side by side: per model and configuration (ranks x threads),
   the median over the runs of each figure, and the range of steps/s.
2. The paper model: a step on N machines is the measured compute of one rank's share
   ("as_share_of" runs: one process, one thread, rank 0's local batch) plus a ring
   all-reduce of the gradients, not overlapped (DDP's buckets here are single: the one
   bucket starts when backward ends):
       comm(N) = 2 (N - 1) / N * bytes / bandwidth + 2 (N - 1) * latency
   for a fixed batch per rank (weak scaling) and a fixed global batch (strong scaling),
   with the efficiency compute / (compute + comm), and the N where that reaches 50%.
"""
import argparse
import json
import statistics

BANDWIDTHS_GBPS = (10, 25, 100)
MACHINES = (2, 4, 8, 16, 32, 64)


def read(path):
    runs, uptimes = [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if "uptime" in record:
                uptimes.append(record["uptime"])
            elif "model" in record:
                runs.append(record)
    return runs, uptimes


def side_by_side(runs):
    print("| model | ranks x threads | runs | steps/s median (range) | step ms | forward+backward ms"
          " | sync ms | no-comm step ms | all-reduce alone ms | bytes/step | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    groups = {}
    for r in runs:
        if not r["as_share_of"]:
            groups.setdefault((r["model"], r["ranks"], r["threads"]), []).append(r)
    for (model, ranks, threads), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        med = lambda key: statistics.median(r[key] for r in rs)
        sps = [r["steps_per_s"] for r in rs]
        loads = [r["load_average_1min"] for r in rs]
        print(f"| {model} | {ranks} x {threads} | {len(rs)} | {med('steps_per_s'):.1f} ({min(sps):.1f}-{max(sps):.1f})"
              f" | {med('step_ms'):.2f} | {med('forward_backward_ms'):.2f} | {med('sync_ms'):.2f}"
              f" | {med('no_comm_step_ms'):.2f} | {med('allreduce_alone_ms'):.3f} | {rs[0]['allreduce_bytes']}"
              f" | {min(loads):.1f}-{max(loads):.1f} |")


def ring_ms(n, nbytes, gbps, latency_us):
    return 1e3 * (2 * (n - 1) / n * nbytes * 8 / (gbps * 1e9)) + 2 * (n - 1) * latency_us * 1e-3


def gather_ms(n, global_batch, bytes_per_sample, gbps, latency_us):
    """A ring all-gather of the global batch's features and, in backward, the matching
    reduce-scatter of their gradients: (N - 1) / N x bytes / bandwidth + (N - 1) x latency
    each."""
    one_way = 1e3 * ((n - 1) / n * global_batch * bytes_per_sample * 8 / (gbps * 1e9)) + (n - 1) * latency_us * 1e-3
    return 2 * one_way


# align's image features: 16 patches x dim 64 floats a picture.
ALIGN_FEATURE_BYTES = 16 * 64 * 4


def compute_ms(runs, model, ranks, global_batch):
    """The median no-communication step time of rank 0's share (as_share_of runs)."""
    times = [r["no_comm_step_ms"] for r in runs
             if r["as_share_of"] and r["model"] == model and r["ranks"] == ranks and r["global_batch"] == global_batch]
    if not times:
        raise SystemExit(f"no as_share_of run of {model} for {ranks} ranks, global batch {global_batch}")
    return statistics.median(times)


def crossover(compute_of, strong_global, nbytes, gbps, latency_us):
    """The first N = 2^k where the all-reduce takes as long as the compute: the measured
    compute up to N = 64, then extrapolated from N = 64: constant per rank (weak), or
    shrinking as 1/N with the local batch (strong, down to one sample per rank). None: not
    before 2^20."""
    n = 2
    while n <= 1 << 20:
        if strong_global and n > strong_global:
            return None
        compute = compute_of(n) if n <= 64 else compute_of(64) * (64 / n if strong_global else 1)
        if ring_ms(n, nbytes, gbps, latency_us) >= compute:
            return n
        n *= 2
    return None


def paper_table(runs, model, per_rank, global_batch, latency_us, compute_scale):
    """per_rank set: weak scaling (global = per_rank x N); else strong (global fixed)."""
    nbytes = next(r["allreduce_bytes"] for r in runs if r["model"] == model)
    batch_of = (lambda n: per_rank * n) if per_rank else (lambda n: global_batch)
    compute_of = lambda n: compute_ms(runs, model, n, batch_of(n)) / compute_scale
    base_ms = compute_of(1)
    kind = f"{per_rank} per rank (weak)" if per_rank else f"global {global_batch} (strong)"
    print(f"\n**{model}, batch {kind}**: {nbytes / 1e3:.0f} kB of gradients; one machine, batch "
          f"{batch_of(1)}: {base_ms:.1f} ms a step, {1e3 * batch_of(1) / base_ms:.0f} samples/s\n")
    head = " | ".join(f"{g} Gb/s: comm ms, step ms, efficiency" for g in BANDWIDTHS_GBPS)
    print(f"| N | local batch | samples/s of all N, no comm | compute ms | {head} |")
    print("|---|---|---|---|" + "---|" * len(BANDWIDTHS_GBPS))
    for n in MACHINES:
        compute = compute_of(n)
        cells = []
        for gbps in BANDWIDTHS_GBPS:
            comm = ring_ms(n, nbytes, gbps, latency_us)
            cells.append(f"{comm:.2f}, {compute + comm:.1f}, {100 * compute / (compute + comm):.0f}%")
        print(f"| {n} | {batch_of(n) // n} | {1e3 * batch_of(n) / compute:.0f} | {compute:.1f} | " +
              " | ".join(cells) + " |")
    ends = []
    for gbps in BANDWIDTHS_GBPS:
        n = crossover(compute_of, None if per_rank else global_batch, nbytes, gbps, latency_us)
        ends.append(f"{gbps} Gb/s: " + (f"N = {n}" if n else "not before one sample per rank or 2^20"))
    if model == "align":
        gathers = ", ".join(f"{gather_ms(64, batch_of(64), ALIGN_FEATURE_BYTES, g, latency_us):.1f} ms at {g} Gb/s"
                            for g in BANDWIDTHS_GBPS)
        print(f"\nWith the image features all-gathered ({ALIGN_FEATURE_BYTES} B a picture) instead of every rank "
              f"embedding every picture, N = 64 adds the gather and its backward reduce-scatter: {gathers}.")
    print("\nThe all-reduce first takes as long as the compute (efficiency 50%; powers of two, the compute "
          "extrapolated beyond N = 64) at " + "; ".join(ends) + ".")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measurements")
    parser.add_argument("--latency-us", type=float, default=25.0, help="per message (default 25)")
    parser.add_argument("--compute-scale", type=float, default=1.0,
                        help="divide the measured compute by this: a machine that many times faster")
    args = parser.parse_args()
    runs, uptimes = read(args.measurements)
    print(f"Load while measuring (uptime, {len(uptimes)} samples): first `{uptimes[0]}`, "
          f"last `{uptimes[-1]}`\n" if uptimes else "")
    side_by_side(runs)
    print(f"\nPaper model: latency {args.latency_us:g} us per message, ring all-reduce, no overlap, compute "
          f"as measured on one core / {args.compute_scale:g}. Efficiency: compute / (compute + comm).")
    for model, per_rank, global_batch in (("align", 32, None), ("align", None, 256), ("vqa", 64, None),
                                          ("vqa", None, 512)):
        paper_table(runs, model, per_rank, global_batch, args.latency_us, args.compute_scale)


if __name__ == "__main__":
    main()
