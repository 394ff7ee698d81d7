"""Writes tests/data/io/torch_dtypes.safetensors: the same float32 values stored by torch as F32,
F16 and BF16 (torch's own rounding), with torch's float32 view of the narrowed values beside them,
so the C++ reader's conversions are checked against PyTorch's.

Run: /usr/bin/python3 tools/reference/make_io_fixtures.py
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_reference import safetensors  # noqa: E402


def main():
    g = torch.Generator().manual_seed(1234)
    special = [0.0, -0.0, 1.0, -1.0, 0.1, 1.0 / 3.0, 65504.0, 65519.0, 65520.0, 70000.0, -1e6,
               6.1035156e-05, 5.9604645e-08, 2.9802322e-08, 2.98023259e-08, 1e-8, 1e-30, 3.0e38,
               math.inf, -math.inf, math.nan,
               1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11,   # F16 ties: to even (down, up)
               1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8]      # BF16 ties
    rand = (torch.randn(200, generator=g) * torch.logspace(-9, 6, 200)).tolist()
    values = torch.tensor(special + rand, dtype=torch.float32)
    tensors = {
        "values_f32": values,
        "values_f16": values.half(),
        "values_f16_as_f32": values.half().float(),
        "values_bf16": values.bfloat16(),
        "values_bf16_as_f32": values.bfloat16().float(),
        "matrix_f16": torch.arange(12, dtype=torch.float32).reshape(3, 4).half(),
    }
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = os.path.join(root, "tests", "data", "io", "torch_dtypes.safetensors")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    safetensors.write(out, tensors, {"writer": "torch", "torch": torch.__version__})
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
