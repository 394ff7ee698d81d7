#!/usr/bin/env python3
"""Network throughput, sluice (CPU backend) beside PyTorch CPU, measured in the same run on the
same weights and inputs and the same thread count. Prints a markdown table of images/s (medians),
the ratio sluice / PyTorch, sluice's peak memory per batch size and its error against PyTorch.

Run (from the repository root, after building the bench_models target):
  /usr/bin/python3 bench/models/compare.py --build build [--threads 2] [--reps 3]
      [--networks hrnet,resunet_small,advanced_resunet,cbam_resunet] [--sizes 256,512]
      [--batches 1,2,4,8] [--max-seconds 20] [--warmup-max-seconds 5] [--plan reduced|full]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import pytorch_peer  # noqa: E402

NETWORKS = ["hrnet", "resunet_small", "advanced_resunet", "cbam_resunet"]


def find_binary(build):
    for rel in ("bench/models/bench_models", "bench_models"):
        path = os.path.join(build, rel)
        if os.path.exists(path):
            return path
    sys.exit(f"bench_models not found under {build}: build the bench_models target first")


def int_list(text):
    """A comma-separated list of whole numbers ("256,512") as ints."""
    return [int(v) for v in text.split(",")]


def write_case(name, tmp, sizes, max_batch):
    """Network `name` at its deployed widths with random weights (pytorch_peer.py), its weights and its
    inputs (and PyTorch's output for the first image) written under `tmp` as bench_models reads them.
    Returns (model, weights path, inputs path, tensors)."""
    model = pytorch_peer.build(name)
    weights = os.path.join(tmp, f"{name}.safetensors")
    inputs = os.path.join(tmp, f"{name}_inputs.safetensors")
    tensors = pytorch_peer.write_case(name, model, sizes, max_batch, weights, inputs)
    return model, weights, inputs, tensors


def run_bench_models(binary, name, weights, inputs, threads, reps, size, batch, max_seconds, extra=(), env=None):
    """One configuration through bench_models: its result row (the last line it prints, JSON)."""
    out = subprocess.run(
        [binary, name, weights, inputs, "--threads", str(threads), "--reps", str(reps), "--sizes", str(size),
         "--batches", str(batch), "--max-reps-seconds", str(max_seconds), *extra],
        check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--batches", default="1,2,4,8")
    ap.add_argument("--max-seconds", type=float, default=20.0,
                    help="stop repeating a configuration once its timed runs used this long (each side)")
    ap.add_argument("--warmup-max-seconds", type=float, default=float("inf"),
                    help="a warm-up run longer than this also counts as the first timed run (each side)")
    ap.add_argument("--plan", default="full", choices=["full", "reduced"],
                    help="reduced: batches 1,2 only at sizes above 256 (keeps a 2-core run near 10 min)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    binary = find_binary(args.build)
    sizes = int_list(args.sizes)
    batches = int_list(args.batches)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        for name in args.networks.split(","):
            model, weights, inputs, tensors = write_case(name, tmp, sizes, max(batches))
            plan = {s: [b for b in batches if args.plan == "full" or s <= 256 or b <= 2] for s in sizes}
            for s in sizes:
                for b in plan[s]:
                    # sluice first, then PyTorch, back to back for each configuration.
                    ours = run_bench_models(binary, name, weights, inputs, args.threads, args.reps, s, b,
                                            args.max_seconds, ["--warmup-max-seconds", str(args.warmup_max_seconds)])
                    median, runs = pytorch_peer.time_forward(model, tensors[f"input_{s}"][:b], args.reps,
                                                             args.max_seconds, args.warmup_max_seconds)
                    row = dict(network=name, size=s, batch=b, torch_images_per_s=b / median, torch_runs=runs,
                               sluice_images_per_s=ours["images_per_s"], sluice_runs=ours["runs"],
                               ratio=ours["images_per_s"] * median / b, peak_mib=ours["peak_bytes"] / 2**20,
                               weight_mib=ours["weight_bytes"] / 2**20, rel_l2=ours["rel_l2_vs_torch"])
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
            del model

    print(f"threads: {args.threads}, reps: {args.reps} (median; fewer when a configuration passed "
          f"{args.max_seconds:g} s), plan: {args.plan}, torch {torch.__version__}")
    print()
    print("| network | size | batch | PyTorch img/s | sluice img/s | sluice / PyTorch | sluice peak MiB "
          "(weights) | rel. L2 vs PyTorch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['network']} | {r['size']} | {r['batch']} | {r['torch_images_per_s']:.3f} | "
              f"{r['sluice_images_per_s']:.3f} | {r['ratio']:.2f}x | {r['peak_mib']:.0f} ({r['weight_mib']:.0f}) | "
              f"{r['rel_l2']:.1e} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
