"""Tests of the PyTorch reference networks: full-width parameter counts and checkpoint keys of
the deployed networks (tools/reference/README.md), sluice's size rules, and that the committed goldens
(tests/data/goldens) still agree with models.py.

  /usr/bin/python3 tools/reference/test_reference.py        (ctest runs it when torch is there)
"""
import json
import os
import sys
import unittest

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sluice_reference import models, safetensors  # noqa: E402

GOLDENS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "data", "goldens")


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def count(model):
    return sum(p.numel() for p in model.parameters())


class FullWidth(unittest.TestCase):
    """The deployed networks' published parameter counts: exact where known, to their rounding otherwise."""

    def test_hrnet_w48(self):
        net = models.HRNetV2()
        self.assertEqual(count(net), 65_846_401)
        s = shapes(net)
        expected = {
            "conv1.weight": (64, 3, 3, 3), "bn2.bias": (64,),
            "layer1.0.downsample.0.weight": (256, 64, 1, 1), "layer1.0.downsample.1.weight": (256,),
            "layer1.3.conv3.weight": (256, 64, 1, 1),
            "transition1.0.0.weight": (48, 256, 3, 3), "transition1.0.1.bias": (48,),
            "transition1.1.0.0.weight": (96, 256, 3, 3), "transition1.1.0.1.weight": (96,),
            "transition2.2.0.0.weight": (192, 96, 3, 3), "transition3.3.0.0.weight": (384, 192, 3, 3),
            "stage2.0.branches.1.3.conv2.weight": (96, 96, 3, 3),
            "stage2.0.fuse_layers.0.1.0.weight": (48, 96, 1, 1),
            "stage2.0.fuse_layers.1.0.0.0.weight": (96, 48, 3, 3),
            "stage3.3.fuse_layers.2.0.0.0.weight": (48, 48, 3, 3),
            "stage3.3.fuse_layers.2.0.1.0.weight": (192, 48, 3, 3),
            "stage4.2.fuse_layers.3.0.2.0.weight": (384, 48, 3, 3),
            "stage4.2.fuse_layers.3.0.2.1.bias": (384,),
            "stage4.2.fuse_layers.0.3.0.weight": (48, 384, 1, 1),
            "stage4.2.branches.3.3.bn2.weight": (384,),
            "last_layer.0.weight": (720, 720, 1, 1), "last_layer.0.bias": (720,),
            "last_layer.1.weight": (720,), "last_layer.3.weight": (1, 720, 1, 1), "last_layer.3.bias": (1,),
        }
        for k, v in expected.items():
            self.assertEqual(s.get(k), v, k)
        for absent in ("conv1.bias", "transition2.0.0.weight", "transition2.1.0.weight", "stage3.4.branches.0.0.conv1.weight",
                       "stage4.3.branches.0.0.conv1.weight", "stage2.0.fuse_layers.0.0.0.weight", "bn1.running_mean"):
            self.assertNotIn(absent, s)

    def test_resunet_small(self):
        net = models.ResUNetSmall()
        self.assertAlmostEqual(count(net) / 1e6, 58.1, delta=0.05)
        s = shapes(net)
        expected = {
            "init_conv.0.weight": (48, 3, 7, 7), "init_conv.1.weight": (48,),
            "downs.4.adjust_channels.weight": (512, 384, 1, 1), "downs.0.se.fc.0.weight": (8, 48),
            "downs.0.se.fc.3.weight": (48, 8), "bottleneck.0.conv1.weight": (1024, 512, 3, 3),
            "bottleneck.1.se.fc.0.weight": (64, 1024), "bottleneck.1.spatial_attention.conv.weight": (1, 2, 7, 7),
            "ups.0.weight": (1024, 512, 2, 2), "ups.0.bias": (512,), "ups.1.conv1.weight": (512, 1024, 3, 3),
            "ups.2.weight": (512, 384, 2, 2), "ups.9.conv1.weight": (48, 96, 3, 3),
            "attentions.0.W_g.0.weight": (256, 512, 1, 1), "attentions.4.W_x.0.weight": (24, 48, 1, 1),
            "attentions.4.psi.0.weight": (1, 24, 1, 1), "attentions.4.psi.1.weight": (1,),
            "attentions.2.spatial_attention.conv.weight": (1, 2, 7, 7),
            "final_conv.0.weight": (24, 48, 3, 3), "final_conv.1.bias": (24,),
            "final_conv.4.weight": (1, 24, 1, 1), "final_conv.4.bias": (1,),
        }
        for k, v in expected.items():
            self.assertEqual(s.get(k), v, k)
        for absent in ("downs.0.adjust_channels.weight", "attentions.0.W_g.0.bias", "attentions.0.psi.0.bias", "ups.10.weight"):
            self.assertNotIn(absent, s)

    def test_advanced_resunet(self):
        net = models.AdvancedResUNet(features=[64, 128, 256, 512])
        self.assertAlmostEqual(count(net) / 1e6, 78.2, delta=0.05)
        s = shapes(net)
        expected = {
            "init_conv.0.weight": (64, 3, 7, 7), "encoder1.1.conv2.weight": (64, 64, 3, 3),
            "encoder2.0.skip.0.weight": (128, 64, 1, 1), "encoder2.0.skip.1.bias": (128,),
            "encoder3.2.attention.fusion.0.weight": (256, 256, 1, 1), "encoder3.2.attention.fusion.1.weight": (256,),
            "encoder4.2.attention.stage2.conv_ch.weight": (1, 2, 1, 7),
            "encoder4.2.attention.stage2.conv_cw.weight": (1, 2, 7, 1),
            "encoder4.2.attention.stage2.conv_hw.weight": (1, 2, 7, 7),
            "bottleneck.0.skip.0.weight": (1024, 512, 1, 1),
            "bottleneck.1.qkv.0.weight": (1024, 1, 3, 3), "bottleneck.1.qkv.1.weight": (3072, 1024, 1, 1),
            "bottleneck.1.proj.weight": (1024, 1024, 1, 1), "bottleneck.1.proj.bias": (1024,),
            "bottleneck.1.relative_position_bias_table": (169, 8),
            "bottleneck.2.conv1.weight": (1024, 1024, 3, 3),
            "upconv4.weight": (1024, 512, 2, 2), "upconv1.weight": (128, 64, 2, 2), "upconv1.bias": (64,),
            "att4.W_g.0.weight": (256, 512, 1, 1), "att4.W_g.1.weight": (256,),
            "att1.psi.0.weight": (1, 32, 1, 1), "att1.psi.0.bias": (1,), "att1.psi.1.weight": (1,),
            "att1.refine.conv_ch.weight": (1, 2, 1, 7), "att1.refine.conv_hw.weight": (1, 2, 7, 7),
            "decoder4.0.conv1.weight": (512, 1024, 3, 3), "decoder4.0.skip.0.weight": (512, 1024, 1, 1),
            "decoder1.1.norm2.bias": (64,),
            "final_conv.0.weight": (32, 64, 3, 3), "final_conv.3.weight": (1, 32, 1, 1), "final_conv.3.bias": (1,),
        }
        for k, v in expected.items():
            self.assertEqual(s.get(k), v, k)
        for absent in ("encoder1.0.skip.0.weight", "decoder4.1.skip.0.weight", "att4.W_g.0.bias",
                       "encoder1.0.attention.stage1.weight", "bottleneck.1.qkv.0.bias"):
            self.assertNotIn(absent, s)
        self.assertEqual(shapes(models.AdvancedResUNet())["encoder1.0.conv1.weight"], (20, 20, 3, 3))  # default widths

    def test_cbam_resunet(self):
        net = models.CBAMResUNet()
        self.assertEqual(count(net), 52_072_673)
        s = shapes(net)
        expected = {
            "init_conv.0.weight": (64, 3, 3, 3), "init_conv.1.bias": (64,),
            "downs.1.adjust_channels.0.weight": (128, 64, 1, 1), "downs.1.adjust_channels.1.weight": (128,),
            "downs.0.cbam.channel_attention.shared_mlp.0.weight": (8, 64),
            "downs.0.cbam.channel_attention.shared_mlp.2.weight": (64, 8),
            "bottleneck.1.cbam.channel_attention.shared_mlp.0.weight": (64, 1024),
            "bottleneck.1.cbam.spatial_attention.conv.weight": (1, 2, 7, 7),
            "ups.0.weight": (1024, 512, 2, 2), "ups.6.weight": (128, 64, 2, 2), "ups.7.conv1.weight": (64, 128, 3, 3),
            "attentions.0.W_g.0.weight": (256, 512, 1, 1), "attentions.0.W_g.0.bias": (256,),
            "attentions.0.W_x.0.bias": (256,), "attentions.3.psi.0.bias": (1,), "attentions.3.psi.1.weight": (1,),
            "final_conv.0.weight": (32, 64, 3, 3), "final_conv.4.weight": (1, 32, 1, 1), "final_conv.4.bias": (1,),
        }
        for k, v in expected.items():
            self.assertEqual(s.get(k), v, k)
        for absent in ("downs.0.adjust_channels.0.weight", "init_conv.0.bias", "downs.0.conv1.bias"):
            self.assertNotIn(absent, s)


class SizeRules(unittest.TestCase):
    """sluice's differences: any input size gives an output of exactly the input size."""

    def test_odd_sizes(self):
        torch.manual_seed(0)
        nets = {"hrnet": dict(widths=[4, 8, 12, 16]), "resunet_small": dict(features=[4, 8, 8, 8, 8]),
                "advanced_resunet": dict(features=[4, 8, 8, 8]), "cbam_resunet": dict(features=[4, 8, 8, 8])}
        for name, kw in nets.items():
            net = models.build(name, **kw).eval()
            for h, w in ((64, 40), (33, 71), (70, 90), (64, 96)):  # ResUNetSmall: bottlenecks 2x1, 1x2
                with torch.no_grad():
                    y = net(torch.randn(1, 3, h, w))
                self.assertEqual(tuple(y.shape), (1, 1, h, w), f"{name} at {h}x{w}")

    def test_a_single_value_plane_raises(self):
        # As in PyTorch (even in eval()), instance norm refuses a plane of one value; sluice too.
        net = models.build("resunet_small", features=[4, 8, 8, 8, 8]).eval()
        with self.assertRaisesRegex(ValueError, "more than 1 spatial element"), torch.no_grad():
            net(torch.randn(1, 3, 63, 63))  # bottleneck 1x1

    def test_committed_input_size_table_is_current(self):
        import make_input_sizes
        with open(make_input_sizes.OUT) as f:
            self.assertEqual(f.read(), make_input_sizes.dump(make_input_sizes.table()),
                             "rewrite it with tools/reference/make_input_sizes.py")

    def test_build_rejects_unknown(self):
        with self.assertRaises(ValueError):
            models.build("unet")


class Goldens(unittest.TestCase):
    """The committed golden files are what models.py computes (float64, stored float32)."""

    def test_goldens_match_the_reference(self):
        for name in models.NAMES:
            weights, meta = safetensors.read(os.path.join(GOLDENS, f"{name}.safetensors"))
            io, io_meta = safetensors.read(os.path.join(GOLDENS, f"{name}_io.safetensors"))
            self.assertEqual(meta, io_meta)
            net = models.build(name, **json.loads(meta["config"])).double().eval()
            net.load_state_dict({k: v.double() for k, v in weights.items()})  # strict: keys match
            for tag in ("", "_odd"):
                x = io["input" + tag].double()
                self.assertEqual(list(x.shape), json.loads(meta[f"input{tag}_shape"]))
                with torch.no_grad():
                    y = net(x)
                ref = io["output" + tag].double()
                rel = ((y - ref).norm() / ref.norm()).item()
                self.assertLess(rel, 1e-6, f"{name}{tag}: golden differs from models.py by {rel:.2e}")


if __name__ == "__main__":
    unittest.main()
