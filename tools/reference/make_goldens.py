"""Writes the networks' golden files to tests/data/goldens/ (see the README.md written there).

For each network, a reduced-width configuration with random weights (instance-norm gammas and
betas random too, every bias nonzero) runs in float64 on random inputs of batch 2 at 64x96 and at
the odd size 70x90, where sluice's resize rules apply. Weights and inputs are rounded to float16
before the forward pass and stored as F16 -- exact values, half the bytes -- and the outputs are
stored as float32, so a float32 implementation is compared against a result more accurate than
itself.

Run: /usr/bin/python3 tools/reference/make_goldens.py [--out DIR] [--only NAME ...]
     /usr/bin/python3 tools/reference/make_goldens.py --full --out /tmp/goldens-full   (deployed widths)
"""
import argparse
import copy
import json
import os
import sys

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sluice_reference import models, safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
SEED = 20261126
SIZES = {"input": (2, 3, 64, 96), "input_odd": (2, 3, 70, 90)}

# name -> (constructor keyword, reduced widths). Small enough that tests/data stays a few MB,
# mixed so that widths below and at SIMD multiples both occur; ResUNetSmall's and HRNet's do not
# double at every level (as ResUNetSmall's default 384 -> 512 does not), so code must not assume it.
CONFIGS = {
    "hrnet": ("widths", [4, 8, 12, 16]),
    "resunet_small": ("features", [4, 8, 16, 24, 32]),
    "advanced_resunet": ("features", [4, 8, 16, 32]),  # bottleneck 64 channels: 8 heads of 8
    "cbam_resunet": ("features", [4, 8, 16, 32]),
}


# --full: the deployed widths at a small input, for a folder outside the repository (the weights
# are 100-260 MB each); the network tests read such a folder through SLUICE_GOLDEN_DIR. 128x128,
# not 64x64: there HRNet W48's last branch is 2x2, and instance norm over 4 pixels makes even
# PyTorch's own float32 forward miss 1e-4 (1.2e-4 measured).
FULL_CONFIGS = {
    "hrnet": ("widths", [48, 96, 192, 384]),
    "resunet_small": ("features", [48, 96, 192, 384, 512]),
    "advanced_resunet": ("features", [64, 128, 256, 512]),
    "cbam_resunet": ("features", [64, 128, 256, 512]),
}
FULL_SIZES = {"input": (1, 3, 128, 128), "input_odd": (1, 3, 130, 150)}


def to_f16_grid(t):
    """Rounds to the nearest float16 value (kept in t's dtype)."""
    return t.to(torch.float16).to(t.dtype)


def randomize(model, gen):
    """Random weights everywhere: default-style uniform fan-in scaling for convolutions and linear
    layers (so activations stay O(1)), gammas in [0.5, 1.5], betas and biases in [-0.5, 0.5]."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.InstanceNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen, dtype=torch.float64) + 0.5)
                module.bias.copy_(torch.rand(module.bias.shape, generator=gen, dtype=torch.float64) - 0.5)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                w = module.weight
                if isinstance(module, torch.nn.ConvTranspose2d):
                    fan_in = w.shape[0]  # 2x2 stride 2: each output sees one tap per input channel
                else:
                    fan_in = w[0].numel()  # in/groups * kh * kw, or in for a linear layer
                bound = (3.0 / fan_in) ** 0.5  # variance 1/fan_in
                w.copy_((torch.rand(w.shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
                if module.bias is not None:
                    module.bias.copy_(torch.rand(module.bias.shape, generator=gen, dtype=torch.float64) - 0.5)
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.02)
        for p in model.parameters():
            p.copy_(to_f16_grid(p))


def scale_output_layer(model, x):
    """Rescales the last convolution (the logits) so that the logits vary with spread 1 about
    their bias: with random weights the spread is otherwise a matter of luck, and a flat output
    would make a relative-error test insensitive."""
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        y = model(x) - last.bias.view(1, -1, 1, 1)
        last.weight.mul_(1.0 / y.std().item())
        last.weight.copy_(to_f16_grid(last.weight))


def round_tf32(t):
    """Rounds float32 values to TF32's 10 explicit mantissa bits (to nearest, ties away from zero)."""
    bits = t.float().contiguous().view(torch.int32)
    return ((bits + 0x1000) & -0x2000).view(torch.float32)


ROUNDING = {"tf32": round_tf32, "fp16": lambda t: t.half().float(), "bf16": lambda t: t.bfloat16().float()}
MULTIPLYING = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def rounded(fn, value):
    """fn applied to a tensor, or to each tensor of a list or tuple (HRNet's branches)."""
    if torch.is_tensor(value):
        return fn(value)
    if isinstance(value, (list, tuple)):
        return type(value)(rounded(fn, v) for v in value)
    return value


def rounded_model(model, precision):
    """A float32 copy of model whose forward emulates a GPU precision's rounding, for the error such
    a forward can be expected to show (the CUDA tests' bound); call it on float inputs:
    - tf32: what convolutions and linear layers multiply (inputs, weights) is rounded to TF32, the
      sums stay float32 -- cuDNN's TF32 math;
    - fp16 / bf16: the input, every weight and every module's output are stored in that format,
      the arithmetic inside a module stays float32 -- cuDNN's and autocast's 16-bit storage."""
    fn = ROUNDING[precision]
    m = copy.deepcopy(model).float()
    with torch.no_grad():
        for module in m.modules():
            for p in module.parameters(recurse=False):
                if precision != "tf32" or isinstance(module, MULTIPLYING):
                    p.copy_(fn(p))
    for module in m.modules():
        if precision == "tf32":
            if isinstance(module, MULTIPLYING):
                module.register_forward_pre_hook(lambda _m, args: rounded(fn, args))
        elif module is not m:
            module.register_forward_hook(lambda _m, _args, out: rounded(fn, out))
    return lambda x: m(fn(x.float()))


def relative_l2(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def make(name, out_dir, gen, configs=CONFIGS, sizes=SIZES):
    key, widths = configs[name]
    model = models.build(name, **{key: widths}).double().eval()
    randomize(model, gen)
    inputs = {tag: to_f16_grid(torch.randn(shape, generator=gen, dtype=torch.float64))
              for tag, shape in sizes.items()}
    scale_output_layer(model, inputs["input"])
    config = {key: widths}
    meta = {
        "network": name,
        "config": json.dumps(config),
        "input_shape": json.dumps(list(sizes["input"])),
        "input_odd_shape": json.dumps(list(sizes["input_odd"])),
        "seed": str(SEED),
        "reference": "tools/reference/sluice_reference/models.py, float64 forward; weights and inputs "
                     "on the float16 grid (stored F16), outputs float32",
        "torch": torch.__version__,
    }
    io = {}
    # PyTorch's own float32 forward, measured against the float64 golden: the error a correct
    # float32 implementation can be expected to show (recorded in the metadata).
    model32 = models.build(name, **{key: widths}).float().eval()
    model32.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    fp32_error = {}
    rounded_error = {p: {} for p in ROUNDING}
    rounded_models = {p: rounded_model(model32, p) for p in ROUNDING}
    with torch.no_grad():
        for tag, shape in sizes.items():
            x = inputs[tag]
            y = model(x)
            out_tag = tag.replace("input", "output")
            fp32_error[out_tag] = float(f"{relative_l2(model32(x.float()), y):.3g}")
            for p, forward in rounded_models.items():
                rounded_error[p][out_tag] = float(f"{relative_l2(forward(x), y):.3g}")
            if tuple(y.shape) != (shape[0], 1, shape[2], shape[3]):
                raise RuntimeError(f"{name}: output {tuple(y.shape)} for input {shape}")
            if not torch.isfinite(y).all():
                raise RuntimeError(f"{name}: non-finite output")
            io[tag] = x.to(torch.float16)
            io[out_tag] = y.to(torch.float32)
    meta["torch_fp32_rel_l2"] = json.dumps(fp32_error)
    meta["torch_rounded_rel_l2"] = json.dumps(rounded_error)
    weights = {k: v.to(torch.float16) for k, v in model.state_dict().items()}
    wpath = os.path.join(out_dir, f"{name}.safetensors")
    iopath = os.path.join(out_dir, f"{name}_io.safetensors")
    safetensors.write(wpath, weights, meta)
    safetensors.write(iopath, {k: io[k] for k in ("input", "output", "input_odd", "output_odd")}, meta)
    n = sum(v.numel() for v in weights.values())
    print(f"{name:17s} {key}={widths}: {len(weights)} tensors, {n:,} parameters; "
          f"{os.path.getsize(wpath) + os.path.getsize(iopath):,} bytes; "
          f"output mean {io['output'].mean().item():+.3f} std {io['output'].std().item():.3f}; "
          f"torch fp32 rel L2 {fp32_error}, rounded {rounded_error}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "goldens"))
    ap.add_argument("--only", nargs="*", choices=list(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--full", action="store_true",
                    help="deployed widths at 128x128 and 130x150, batch 1 (large: needs --out outside the repo)")
    args = ap.parse_args()
    configs, sizes = (FULL_CONFIGS, FULL_SIZES) if args.full else (CONFIGS, SIZES)
    if args.full and os.path.abspath(args.out).startswith(os.path.join(ROOT, "tests")):
        ap.error("--full writes hundreds of MB: give --out a folder outside tests/")
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    for name in configs:  # one generator per network: its data does not depend on --only
        gen = torch.Generator().manual_seed(SEED + list(configs).index(name))
        if name in args.only:
            make(name, args.out, gen, configs, sizes)


if __name__ == "__main__":
    main()
