#!/usr/bin/python3
"""Converts a PyTorch checkpoint (.pth / .pt) into a safetensors file that sluice loads.

The checkpoint may hold a dict with "model_state_dict" or "state_dict", or be a bare state dict.
A "module." prefix on every key (nn.DataParallel) is removed. Non-floating tensors (e.g. BatchNorm's
num_batches_tracked) are left out and listed. Floating tensors are written as --dtype.

  /usr/bin/python3 tools/convert_checkpoint.py model.pth model.safetensors [--dtype f32|f16|bf16]
      [--metadata key=value ...] [--network NAME --config JSON] [--trust-pickle] [--quiet]

--network checks the keys and shapes against the reference network (tools/reference) built with
--config (e.g. '{"widths": [48, 96, 192, 384]}'), before writing.
"""
import argparse
import json
import os
import pickletools
import sys
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
from sluice_reference import safetensors  # noqa: E402

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def fail(message):
    print(f"convert_checkpoint: error: {message}", file=sys.stderr)
    sys.exit(1)


# Globals a checkpoint may name without being able to run code: tensor/storage rebuilding, plain
# containers, numpy scalars (a saved metric) and argparse.Namespace (saved training arguments).
# torch 1.13's weights_only loader refuses even a float (e.g. "best_dice": 0.9) and ignores a
# custom pickle_module, so sluice checks the pickle's globals itself before torch.load runs it;
# --trust-pickle skips the check.
SAFE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol 2 pickles bytes (inside numpy scalars)
    ("argparse", "Namespace"),
}
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
               "BINSTRING", "STRING"}


def _allowed(module, name):
    return (module, name) in SAFE_GLOBALS or (module == "torch" and name.endswith("Storage"))


def unsafe_globals(path):
    """The globals that the checkpoint's pickle refers to beyond SAFE_GLOBALS (empty: safe to
    load). Raises ValueError when the file cannot be checked."""
    if not zipfile.is_zipfile(path):
        raise ValueError("it is not in torch's zip format (a pre-1.6 legacy file?), which this check "
                         "cannot read")
    bad = []
    with zipfile.ZipFile(path) as z:
        pickles = [n for n in z.namelist() if n.rsplit("/", 1)[-1] == "data.pkl"]
        if not pickles:
            raise ValueError("the archive has no data.pkl")
        for member in pickles:
            memo, memo_count, recent = {}, 0, []  # recent: strings on top of the stack, or None
            for op, arg, _ in pickletools.genops(z.read(member)):
                if op.name == "GLOBAL":
                    module, name = arg.split(" ", 1)
                    if not _allowed(module, name):
                        bad.append(f"{module}.{name}")
                    recent = [None]
                elif op.name in _STRING_OPS:
                    recent.append(arg if isinstance(arg, str) else None)
                elif op.name == "MEMOIZE":
                    memo[memo_count] = recent[-1] if recent else None
                    memo_count += 1
                elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = recent[-1] if recent else None
                elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                    recent.append(memo.get(arg))
                elif op.name == "STACK_GLOBAL":
                    module, name = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
                    if module is None or name is None:
                        bad.append("(a global this check cannot resolve)")
                    elif not _allowed(module, name):
                        bad.append(f"{module}.{name}")
                    recent = [None]
                elif op.name in ("EXT1", "EXT2", "EXT4", "INST", "OBJ"):
                    bad.append(f"(pickle opcode {op.name})")
                else:
                    recent = [None]
    return sorted(set(bad))


def load(path, trust_pickle):
    if not os.path.exists(path):
        fail(f"{path}: no such file")
    if not trust_pickle:
        try:
            bad = unsafe_globals(path)
        except (ValueError, zipfile.BadZipFile) as e:
            fail(f"{path}: cannot check the file for code: {e}.\n"
                 "  If you trust this file, run again with --trust-pickle.")
        if bad:
            fail(f"{path}: the checkpoint refers to {', '.join(bad)}, which a weights file has no "
                 "need of.\n  If you trust this file, run again with --trust-pickle.")
    try:
        return torch.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - torch raises many kinds
        fail(f"{path}: cannot load: {type(e).__name__}: {e}")


def extract_state_dict(obj, path):
    """Returns (state dict, where it was found)."""
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict(), "a whole saved nn.Module"
    if not isinstance(obj, dict):
        fail(f"{path}: holds a {type(obj).__name__}, not a dict or a state dict")
    for key in ("model_state_dict", "state_dict"):
        if key in obj:
            inner = obj[key]
            if not isinstance(inner, dict):
                fail(f"{path}: '{key}' is a {type(inner).__name__}, not a state dict")
            return inner, f"'{key}'"
    if obj and all(torch.is_tensor(v) for v in obj.values()):
        return obj, "a bare state dict"
    keys = ", ".join(repr(k) for k in list(obj)[:12])
    fail(f"{path}: no 'model_state_dict' or 'state_dict', and not a bare state dict (keys: {keys})")


def strip_module_prefix(sd):
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}, True
    return sd, False


def convert(sd, dtype):
    """Returns (tensors to write, skipped [(name, dtype)])."""
    out, skipped = {}, []
    for name, t in sd.items():
        if not torch.is_tensor(t):
            fail(f"'{name}' is a {type(t).__name__}, not a tensor")
        if not t.is_floating_point():
            skipped.append((name, t.dtype))
            continue
        t = t.detach().cpu().contiguous()
        converted = t.to(dtype)
        overflow = torch.isinf(converted) & torch.isfinite(t)
        if overflow.any():
            fail(f"'{name}': {int(overflow.sum())} values exceed the range of {dtype} "
                 f"(max |x| = {t.abs().max().item():.6g}); use a wider --dtype")
        out[name] = converted
    return out, skipped


def check_against_network(tensors, network, config):
    from sluice_reference import models  # imported only when asked: it builds a network
    expected = models.build(network, **config).state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    wrong = [f"{k}: {list(tensors[k].shape)} vs expected {list(v.shape)}"
             for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or wrong:
        lines = [f"checkpoint does not match {network} {config}:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        fail("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch checkpoint -> safetensors for sluice")
    ap.add_argument("input", help=".pth/.pt checkpoint")
    ap.add_argument("output", help="safetensors file to write")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32", help="storage type of floating tensors")
    ap.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                    help="extra string metadata (repeatable)")
    ap.add_argument("--network", help="check keys/shapes against this reference network "
                                      "(hrnet, resunet_small, advanced_resunet, cbam_resunet)")
    ap.add_argument("--config", default="{}", help="JSON constructor arguments for --network")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="allow arbitrary pickled objects (only for files you trust)")
    ap.add_argument("--quiet", action="store_true", help="print only the totals")
    args = ap.parse_args(argv)

    obj = load(args.input, args.trust_pickle)
    sd, found = extract_state_dict(obj, args.input)
    sd, stripped = strip_module_prefix(sd)
    tensors, skipped = convert(sd, DTYPES[args.dtype])
    if not tensors:
        fail(f"{args.input}: no floating-point tensors found")
    if args.network:
        try:
            config = json.loads(args.config)
        except json.JSONDecodeError as e:
            fail(f"--config is not JSON: {e}")
        check_against_network(tensors, args.network, config)

    metadata = {"format": "pt", "source": os.path.basename(args.input),
                "converted_by": "sluice tools/convert_checkpoint.py", "torch": torch.__version__}
    if args.network:
        metadata["network"] = args.network
        metadata["config"] = args.config
    for item in args.metadata:
        if "=" not in item:
            fail(f"--metadata {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        metadata[k] = v
    safetensors.write(args.output, tensors, metadata)

    if not args.quiet:
        width = max(len(k) for k in tensors)
        for k, t in tensors.items():
            print(f"  {k:{width}s}  {str(list(t.shape)):22s} {args.dtype}")
    total = sum(t.numel() for t in tensors.values())
    print(f"{args.input}: {found}{', module. prefix removed' if stripped else ''}; "
          f"{len(tensors)} tensors, {total:,} parameters -> {args.output} "
          f"({os.path.getsize(args.output):,} bytes, {args.dtype})")
    for name, dt in skipped:
        print(f"  left out (not floating point): {name} ({dt})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
