"""The PyTorch side of the network benchmark: builds a network of tools/reference at its deployed
widths with random weights, writes those weights and the inputs as safetensors (so that sluice
runs on exactly the same numbers), and times PyTorch's own forward pass on the CPU.

Used by bench/models/compare.py; runs under Debian's torch (/usr/bin/python3).
"""
import os
import statistics
import sys
import time

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "..", "tools", "reference"))
from sluice_reference import models as reference_models  # noqa: E402
from sluice_reference import safetensors  # noqa: E402

# Deployed configurations (tools/reference/README.md): HRNet W48, the others at their deployed widths.
DEPLOYED = {
    "hrnet": dict(widths=[48, 96, 192, 384]),
    "resunet_small": dict(features=[48, 96, 192, 384, 512]),
    "advanced_resunet": dict(features=[64, 128, 256, 512]),
    "cbam_resunet": dict(features=[64, 128, 256, 512]),
}


def build(name, seed=0):
    """The network `name` at its deployed widths, with random weights (norm affines randomised
    too, so that no layer is an identity), in eval mode."""
    torch.manual_seed(seed)
    model = reference_models.build(name, **DEPLOYED[name])
    with torch.no_grad():
        for key, p in model.state_dict().items():
            if p.dim() == 1:  # norm gammas (".weight"), norm betas and biases (".bias")
                if key.endswith(".weight"):
                    p.uniform_(0.5, 1.5)
                elif key.endswith(".bias"):
                    p.uniform_(-0.2, 0.2)
    return model.eval()


def write_case(name, model, sizes, max_batch, weights_path, inputs_path, seed=1):
    """Weights -> weights_path; input_<S> (max_batch x 3 x S x S) and output_<S> (PyTorch's
    logits of the first image) for each size -> inputs_path."""
    safetensors.write(weights_path, {k: v.contiguous() for k, v in model.state_dict().items()},
                      {"network": name})
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    with torch.no_grad():
        for s in sizes:
            x = torch.randn(max_batch, 3, s, s, generator=g)
            tensors[f"input_{s}"] = x
            tensors[f"output_{s}"] = model(x[:1]).contiguous()
    safetensors.write(inputs_path, tensors)
    return tensors


def time_forward(model, x, reps, max_seconds, warmup_max_seconds=float("inf")):
    """Median seconds of model(x) over up to `reps` runs after one warm-up run; stops repeating
    once the runs have used max_seconds. A warm-up run longer than warmup_max_seconds (first-touch
    costs are noise in it) is also the first timed run."""
    times = []
    with torch.no_grad():
        t0 = time.perf_counter()
        model(x)
        warmup = time.perf_counter() - t0
        if warmup > warmup_max_seconds:
            times.append(warmup)
            if warmup > max_seconds:
                return warmup, 1
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
            if sum(times) > max_seconds:
                break
    return statistics.median(times), len(times)
