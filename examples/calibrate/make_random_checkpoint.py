"""Writes a reduced-width network with random weights as a safetensors checkpoint, for calibrating
the CPU backend when no trained checkpoint is at hand (timing and memory do not depend on the
weights' values). Uses the PyTorch reference networks of tools/reference.

Run: /usr/bin/python3 examples/calibrate/make_random_checkpoint.py NAME OUT.safetensors [--widths 8 16 32 64]
"""
import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
from make_goldens import CONFIGS, randomize  # noqa: E402
from sluice_reference import models, safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name", choices=list(CONFIGS))
    ap.add_argument("out")
    ap.add_argument("--widths", type=int, nargs="*", help="widths (default: the goldens' reduced ones)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    key, widths = CONFIGS[args.name]
    if args.widths:
        widths = args.widths
    model = models.build(args.name, **{key: widths}).double().eval()
    randomize(model, torch.Generator().manual_seed(args.seed))
    weights = {k: v.to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    safetensors.write(args.out, weights, {"network": args.name, "config": str({key: widths})})
    print(f"{args.name} {key}={widths}: {sum(v.numel() for v in weights.values()):,} parameters -> {args.out}")


if __name__ == "__main__":
    main()
