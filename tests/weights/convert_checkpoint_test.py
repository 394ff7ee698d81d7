"""ctest: tools/convert_checkpoint.py end to end. Makes tiny .pth files with torch (the three
layouts a checkpoint comes in), converts them in each dtype, reads the result with sluice's C++
reader (the safetensors_dump program) and compares with torch's own values and conversions.

  /usr/bin/python3 tests/io/convert_checkpoint_test.py --dump build/tests/io/safetensors_dump
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import numpy
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONVERTER = os.path.join(ROOT, "tools", "convert_checkpoint.py")
DUMP = None


def state_dict():
    g = torch.Generator().manual_seed(5)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "conv.bias": torch.randn(4, generator=g) * 100,
        "norm.weight": torch.rand(4, generator=g) + 0.5,
        "tiny": torch.tensor([1e-6, -3e-7, 6.0e-8, 0.0, -0.0]),
        "big": torch.tensor([60000.0, -1234.5]),
        "double": torch.randn(2, 2, generator=g, dtype=torch.float64),
        "bn.num_batches_tracked": torch.tensor(7),
    }


def run(*args, ok=True):
    p = subprocess.run([sys.executable, CONVERTER, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise AssertionError(f"converter failed: {p.stderr}")
    return p


def dump(path):
    p = subprocess.run([DUMP, path], capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"C++ reader refused {path}: {p.stderr}")
    return json.loads(p.stdout)


class ConvertCheckpoint(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def check(self, out, sd, dtype):
        data = dump(out)
        self.assertNotIn("bn.num_batches_tracked", data["tensors"])  # integer: left out
        self.assertEqual(set(data["tensors"]), {k for k, v in sd.items() if v.is_floating_point()})
        for name, t in data["tensors"].items():
            src = sd[name]
            self.assertEqual(t["shape"], list(src.shape), name)
            # what PyTorch makes of the value in the storage dtype, viewed as float32
            expected = src.to(dtype).to(torch.float32).flatten().tolist()
            got = [float.fromhex(v) for v in t["values"]]
            self.assertEqual(len(got), len(expected), name)
            for a, b in zip(got, expected):
                self.assertEqual(a, b, f"{name} ({dtype})")
                self.assertEqual(math.copysign(1, a), math.copysign(1, b), f"{name}: sign of zero")
        self.assertEqual(data["metadata"]["format"], "pt")
        return data

    def test_three_layouts_and_three_dtypes(self):
        sd = state_dict()
        layouts = {
            "model_state_dict": {"epoch": 3, "model_state_dict": sd, "optimizer_state_dict": {}},
            "state_dict": {"state_dict": sd, "best_dice": 0.9, "args": argparse.Namespace(lr=1e-3),
                           "loss": numpy.float64(0.25)},
            "bare": sd,
        }
        for layout, obj in layouts.items():
            pth = self.path(f"{layout}.pth")
            torch.save(obj, pth)
            for name, dtype in (("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)):
                out = self.path(f"{layout}_{name}.safetensors")
                p = run(pth, out, "--dtype", name, "--metadata", "note=test")
                self.assertIn("left out (not floating point): bn.num_batches_tracked", p.stdout)
                self.assertIn("conv.weight", p.stdout)  # the summary lists keys and shapes
                data = self.check(out, sd, dtype)
                self.assertEqual(data["metadata"]["note"], "test")

    def test_dataparallel_prefix_is_removed(self):
        sd = state_dict()
        pth = self.path("dp.pth")
        torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, pth)
        out = self.path("dp.safetensors")
        p = run(pth, out)
        self.assertIn("module. prefix removed", p.stdout)
        self.check(out, sd, torch.float32)

    def test_errors(self):
        pth = self.path("odd.pth")
        torch.save({"epoch": 3, "optimizer": {}}, pth)
        p = run(pth, self.path("x.safetensors"), ok=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no 'model_state_dict' or 'state_dict'", p.stderr)
        p = run(self.path("missing.pth"), self.path("x.safetensors"), ok=False)
        self.assertIn("no such file", p.stderr)
        evil = self.path("evil.pth")
        torch.save({"state_dict": state_dict(), "hook": os.system}, evil)  # a global that can run code
        p = run(evil, self.path("x.safetensors"), ok=False)
        self.assertIn("refers to posix.system", p.stderr)
        self.assertIn("--trust-pickle", p.stderr)
        p = run(evil, self.path("x.safetensors"), "--trust-pickle")
        self.assertEqual(p.returncode, 0)
        big = self.path("big.pth")
        torch.save({"w": torch.tensor([1e6])}, big)
        p = run(big, self.path("x.safetensors"), "--dtype", "f16", ok=False)
        self.assertIn("exceed the range", p.stderr)

    def test_network_check(self):
        sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
        from sluice_reference import models
        net = models.build("cbam_resunet", features=[4, 8, 16, 32])
        pth = self.path("cbam.pth")
        torch.save({"model_state_dict": net.state_dict()}, pth)
        out = self.path("cbam.safetensors")
        run(pth, out, "--network", "cbam_resunet", "--config", '{"features": [4, 8, 16, 32]}', "--quiet")
        self.check(out, net.state_dict(), torch.float32)
        p = run(pth, out, "--network", "cbam_resunet", "--config", '{"features": [8, 16, 32, 64]}', ok=False)
        self.assertIn("wrong shape", p.stderr)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True)
    args, rest = ap.parse_known_args()
    DUMP = os.path.abspath(args.dump)
    unittest.main(argv=[sys.argv[0]] + rest)
