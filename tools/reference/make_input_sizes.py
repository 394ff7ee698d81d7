"""Writes tests/data/models/input_sizes.json: for each network, which input sizes the PyTorch
reference runs and which it refuses (an instance norm over a single value, or a pooling left with
nothing, raises). sluice must accept and refuse exactly the same sizes; tests/models reads the table.

The decision does not depend on the weights or the widths, so the networks run with the golden
configurations (make_goldens.CONFIGS) and default initialisation.

Run: /usr/bin/python3 tools/reference/make_input_sizes.py [--out FILE] [--check]
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_goldens import CONFIGS  # noqa: E402
from sluice_reference import models  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "data", "models", "input_sizes.json")

# Every square up to 80 (HRNet's limit is 33, the U-Nets' 32 and 64), and non-square pairs around
# the limits: one side too small alone, both just short, one side making up for the other.
SQUARES = list(range(1, 81))
SIDES = [1, 2, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 96]


def sizes():
    out = [(s, s) for s in SQUARES]
    out += [(h, w) for h in SIDES for w in SIDES if h != w]
    return out


def runs(net, h, w):
    try:
        with torch.no_grad():
            y = net(torch.randn(1, 3, h, w))
    except ValueError:  # instance norm over one value: "Expected more than 1 spatial element"
        return False
    except RuntimeError:  # max pooling of a side of 1: "Output size is too small"
        return False
    if tuple(y.shape) != (1, 1, h, w):
        raise AssertionError(f"output {tuple(y.shape)} for input {h}x{w}")
    return True


def table():
    torch.manual_seed(0)
    result = {}
    for name, (key, widths) in CONFIGS.items():
        net = models.build(name, **{key: widths}).eval()
        result[name] = [[h, w, runs(net, h, w)] for h, w in sizes()]
    return result


def dump(t):
    # One row per size keeps diffs of the committed file readable.
    lines = ["{"]
    names = list(t)
    for i, name in enumerate(names):
        lines.append(f'  "{name}": [')
        rows = [f"    [{h}, {w}, {json.dumps(ok)}]" for h, w, ok in t[name]]
        lines.append(",\n".join(rows))
        lines.append("  ]" + ("," if i + 1 < len(names) else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = ap.parse_args()
    text = dump(table())
    if args.check:
        with open(args.out) as f:
            if f.read() != text:
                sys.exit(f"{args.out} differs from what the reference networks do now")
        return
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
