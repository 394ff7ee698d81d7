"""PyTorch reference implementations of sluice's four segmentation networks.

Module names are chosen so that `state_dict()` keys are exactly the checkpoint keys the C++ networks
bind (include/sluice/models; docs/writing-a-network.md). The networks include sluice's size rules,
which differ from the networks' original code:

- HRNetV2 resizes its logits to exactly the input size (the original scales by 4, which is wrong
  when H or W is not divisible by 4);
- the U-Net decoders resize the upsampled tensor to the skip's size (bilinear, align_corners=False)
  when the two differ, so that any input size works (the original AdvancedResUNet fails when H or W
  is not divisible by 16).

At sizes where the original works, the outputs are the original's.

Classes: HRNetV2(widths=...), ResUNetSmall(features=...), AdvancedResUNet(features=...),
CBAMResUNet(features=...); factory: build(name, **kwargs) with name in NAMES.
Input N x 3 x H x W, output N x 1 x H x W logits.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["HRNetV2", "ResUNetSmall", "AdvancedResUNet", "CBAMResUNet", "build", "NAMES"]


# ---------------------------------------------------------------------------------------------
# Shared pieces

def conv(cin, cout, k, stride=1, bias=False, groups=1):
    """k x k convolution, padding k // 2."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias, groups=groups)


def norm(c):
    """Affine instance norm without running statistics (keys: weight, bias). Like sluice, it refuses
    a plane of a single value (PyTorch raises even in eval()), so the networks raise at sizes where
    their deepest plane is 1x1."""
    return nn.InstanceNorm2d(c, eps=1e-5, affine=True, track_running_stats=False)


def up(cin, cout):
    """Transposed convolution 2x2, stride 2, with bias."""
    return nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2, bias=True)


def resize(x, size, align_corners):
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


def resize_if_needed(x, size):
    """sluice's decoder/output rule: bilinear(align_corners=False) to `size` when it differs."""
    if tuple(x.shape[-2:]) != tuple(size):
        x = resize(x, size, align_corners=False)
    return x


class SpatialAttention(nn.Module):
    """x * sigmoid(conv7([mean_C(x), max_C(x)])). Key: conv."""

    def __init__(self, kernel_size=7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x):
        s = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(s))


# ---------------------------------------------------------------------------------------------
# A. HRNetV2

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes):
        super().__init__()
        self.conv1 = conv(inplanes, planes, 3)
        self.bn1 = norm(planes)
        self.conv2 = conv(planes, planes, 3)
        self.bn2 = norm(planes)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, downsample=None):
        super().__init__()
        self.conv1 = conv(inplanes, planes, 1)
        self.bn1 = norm(planes)
        self.conv2 = conv(planes, planes, 3)
        self.bn2 = norm(planes)
        self.conv3 = conv(planes, planes * self.expansion, 1)
        self.bn3 = norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class HighResolutionModule(nn.Module):
    """Runs each branch (4 BasicBlocks), then fuses every branch into every output branch."""

    def __init__(self, widths, num_blocks=4):
        super().__init__()
        self.widths = list(widths)
        n = len(widths)
        self.branches = nn.ModuleList(
            [nn.Sequential(*[BasicBlock(c, c) for _ in range(num_blocks)]) for c in widths])
        fuse = []
        for i in range(n):
            row = []
            for j in range(n):
                if j == i:
                    row.append(None)
                elif j > i:
                    row.append(nn.Sequential(conv(widths[j], widths[i], 1), norm(widths[i])))
                else:
                    chain = []
                    for k in range(i - j):
                        if k == i - j - 1:
                            chain.append(nn.Sequential(conv(widths[j], widths[i], 3, stride=2), norm(widths[i])))
                        else:
                            chain.append(nn.Sequential(conv(widths[j], widths[j], 3, stride=2), norm(widths[j]),
                                                       nn.ReLU(inplace=False)))
                    row.append(nn.Sequential(*chain))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs):
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i in range(len(xs)):
            size = xs[i].shape[-2:]
            y = None
            for j in range(len(xs)):  # summation order j = 0, 1, ... as in the original
                if j == i:
                    t = xs[j]
                elif j > i:
                    t = resize(self.fuse_layers[i][j](xs[j]), size, align_corners=True)
                else:
                    t = self.fuse_layers[i][j](xs[j])
                y = t if y is None else y + t
            out.append(self.relu(y))
        return out


class HRNetV2(nn.Module):
    """HRNetV2 segmentation network; widths = the four branch widths (W48: 48, 96, 192, 384)."""

    def __init__(self, n_class=1, widths=(48, 96, 192, 384)):
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) != 4:
            raise ValueError("HRNetV2 needs four branch widths")
        self.widths = widths
        self.conv1 = conv(3, 64, 3, stride=2)
        self.bn1 = norm(64)
        self.conv2 = conv(64, 64, 3, stride=2)
        self.bn2 = norm(64)
        self.relu = nn.ReLU(inplace=False)

        downsample = nn.Sequential(conv(64, 256, 1), norm(256))
        self.layer1 = nn.Sequential(Bottleneck(64, 64, downsample), *[Bottleneck(256, 64) for _ in range(3)])

        self.transition1 = nn.ModuleList([
            nn.Sequential(conv(256, widths[0], 3), norm(widths[0]), nn.ReLU(inplace=False)),
            nn.Sequential(nn.Sequential(conv(256, widths[1], 3, stride=2), norm(widths[1]), nn.ReLU(inplace=False))),
        ])
        self.stage2 = nn.Sequential(HighResolutionModule(widths[:2]))
        self.transition2 = nn.ModuleList([None, None, self._new_branch(widths[1], widths[2])])
        self.stage3 = nn.Sequential(*[HighResolutionModule(widths[:3]) for _ in range(4)])
        self.transition3 = nn.ModuleList([None, None, None, self._new_branch(widths[2], widths[3])])
        self.stage4 = nn.Sequential(*[HighResolutionModule(widths) for _ in range(3)])

        total = sum(widths)
        self.last_layer = nn.Sequential(
            nn.Conv2d(total, total, 1, bias=True), norm(total), nn.ReLU(inplace=False),
            nn.Conv2d(total, n_class, 1, bias=True))

    @staticmethod
    def _new_branch(cin, cout):
        return nn.Sequential(nn.Sequential(conv(cin, cout, 3, stride=2), norm(cout), nn.ReLU(inplace=False)))

    def forward(self, x):
        size = x.shape[-2:]
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        xs = [self.transition1[0](x), self.transition1[1](x)]
        for module in self.stage2:
            xs = module(xs)
        xs = xs + [self.transition2[2](xs[-1])]
        for module in self.stage3:
            xs = module(xs)
        xs = xs + [self.transition3[3](xs[-1])]
        for module in self.stage4:
            xs = module(xs)
        s0 = xs[0].shape[-2:]
        feats = torch.cat([xs[0]] + [resize(t, s0, align_corners=True) for t in xs[1:]], dim=1)
        out = self.last_layer(feats)
        # sluice: exactly the input size (the original scales by 4).
        return resize(out, size, align_corners=True)


# ---------------------------------------------------------------------------------------------
# B. ResUNetSmall

class SEBlock(nn.Module):
    """Squeeze-and-excitation with average pooling. Keys: fc.0, fc.3."""

    def __init__(self, channels, dropout=0.1):
        super().__init__()
        hidden = max(channels // 16, 8)
        self.fc = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=False),
                                nn.Dropout(dropout), nn.Linear(hidden, channels, bias=False), nn.Sigmoid())

    def forward(self, x):
        y = self.fc(x.mean(dim=(2, 3)))
        return x * y[:, :, None, None]


class SmallResidualBlock(nn.Module):
    def __init__(self, cin, cout, dropout=0.1):
        super().__init__()
        self.conv1 = conv(cin, cout, 3)
        self.norm1 = norm(cout)
        self.conv2 = conv(cout, cout, 3)
        self.norm2 = norm(cout)
        self.relu = nn.ReLU(inplace=False)
        self.dropout = nn.Dropout2d(dropout)
        self.adjust_channels = conv(cin, cout, 1) if cin != cout else None
        self.se = SEBlock(cout, dropout)
        self.spatial_attention = SpatialAttention()

    def forward(self, x):
        identity = x if self.adjust_channels is None else self.adjust_channels(x)
        out = self.dropout(self.relu(self.norm1(self.conv1(x))))
        out = self.dropout(self.norm2(self.conv2(out)))
        out = self.relu(out + identity)
        return self.spatial_attention(self.se(out))


class SmallAttentionGate(nn.Module):
    def __init__(self, f_g, f_l, f_int):
        super().__init__()
        self.W_g = nn.Sequential(conv(f_g, f_int, 1), norm(f_int))
        self.W_x = nn.Sequential(conv(f_l, f_int, 1), norm(f_int))
        self.psi = nn.Sequential(conv(f_int, 1, 1), norm(1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=False)
        self.spatial_attention = SpatialAttention()

    def forward(self, g, x):
        psi = self.psi(self.relu(self.W_g(g) + self.W_x(x)))
        return self.spatial_attention(x * psi)


class ResUNetSmall(nn.Module):
    def __init__(self, in_channels=3, out_channels=1, features=(48, 96, 192, 384, 512), dropout=0.1):
        super().__init__()
        features = [int(f) for f in features]
        self.features = features
        f0 = features[0]
        self.init_conv = nn.Sequential(conv(in_channels, f0, 7), norm(f0), nn.ReLU(inplace=False),
                                       nn.Dropout2d(dropout))
        self.downs = nn.ModuleList()
        cin = f0
        for f in features:
            self.downs.append(SmallResidualBlock(cin, f, dropout))
            cin = f
        width = features[-1] * 2
        self.bottleneck = nn.Sequential(SmallResidualBlock(cin, width, dropout),
                                        SmallResidualBlock(width, width, dropout))
        self.ups = nn.ModuleList()
        self.attentions = nn.ModuleList()
        prev = width
        for f in reversed(features):
            self.ups.append(up(prev, f))
            self.ups.append(SmallResidualBlock(2 * f, f, dropout))
            self.attentions.append(SmallAttentionGate(f, f, max(f // 2, 8)))
            prev = f
        self.final_conv = nn.Sequential(conv(f0, f0 // 2, 3), norm(f0 // 2), nn.ReLU(inplace=False),
                                        nn.Dropout2d(dropout), nn.Conv2d(f0 // 2, out_channels, 1, bias=True))
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x):
        size = x.shape[-2:]
        x = self.init_conv(x)
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for i, skip in enumerate(reversed(skips)):
            x = resize_if_needed(self.ups[2 * i](x), skip.shape[-2:])
            a = self.attentions[i](x, skip)
            x = self.ups[2 * i + 1](torch.cat([a, x], dim=1))
        return resize_if_needed(self.final_conv(x), size)


# ---------------------------------------------------------------------------------------------
# C. AdvancedResUNet

class SimAM(nn.Module):
    """As deployed (note the minus sign): x * sigmoid(-(x - mu) / sqrt(var + 1e-4)), per channel."""

    def __init__(self, eps=1e-4):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        mu = x.mean(dim=(2, 3), keepdim=True)
        var = ((x - mu) ** 2).mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(-(x - mu) / torch.sqrt(var + self.eps))


class TripletAttention(nn.Module):
    """x * a_ch * a_cw * a_hw from [mean_C, max_C] pools of three views. Keys: conv_ch, conv_cw, conv_hw."""

    def __init__(self, kernel_size=7):
        super().__init__()
        p = kernel_size // 2
        self.conv_ch = nn.Conv2d(2, 1, (1, kernel_size), padding=(0, p), bias=False)
        self.conv_cw = nn.Conv2d(2, 1, (kernel_size, 1), padding=(p, 0), bias=False)
        self.conv_hw = nn.Conv2d(2, 1, kernel_size, padding=p, bias=False)

    @staticmethod
    def _pool_c(t):
        return torch.cat([t.mean(dim=1, keepdim=True), t.amax(dim=1, keepdim=True)], dim=1)

    def forward(self, x):
        a_ch = torch.sigmoid(self.conv_ch(self._pool_c(x.mean(dim=3, keepdim=True))))  # N,1,H,1
        a_cw = torch.sigmoid(self.conv_cw(self._pool_c(x.mean(dim=2, keepdim=True))))  # N,1,1,W
        a_hw = torch.sigmoid(self.conv_hw(self._pool_c(x)))                              # N,1,H,W
        return x * a_ch * a_cw * a_hw


class MultiStageAttention(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.stage1 = SimAM()
        self.stage2 = TripletAttention()
        self.fusion = nn.Sequential(conv(channels, channels, 1), norm(channels), nn.ReLU(inplace=False))

    def forward(self, x):
        return self.fusion(self.stage2(self.stage1(x))) + x


class AdvancedResidualBlock(nn.Module):
    def __init__(self, cin, cout, dropout=0.1):
        super().__init__()
        self.conv1 = conv(cin, cout, 3)
        self.norm1 = norm(cout)
        self.conv2 = conv(cout, cout, 3)
        self.norm2 = norm(cout)
        self.relu = nn.ReLU(inplace=False)
        self.dropout = nn.Dropout2d(dropout)
        self.attention = MultiStageAttention(cout)
        self.skip = nn.Sequential(conv(cin, cout, 1), norm(cout)) if cin != cout else nn.Identity()

    def forward(self, x):
        identity = self.skip(x)
        out = self.dropout(self.relu(self.norm1(self.conv1(x))))
        out = self.attention(self.norm2(self.conv2(out)))
        return self.relu(out + identity)


class LightweightSelfAttention(nn.Module):
    """Multi-head self-attention over all H*W positions. relative_position_bias_table exists in the
    checkpoints and is not used."""

    def __init__(self, dim, heads=8, window=7):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Sequential(conv(dim, dim, 3, groups=dim), conv(dim, 3 * dim, 1))
        self.proj = nn.Conv2d(dim, dim, 1, bias=True)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(n, 3, self.heads, self.head_dim, h * w).unbind(dim=1)
        attn = torch.softmax(torch.einsum("bhdn,bhdm->bhnm", q, k) * self.scale, dim=-1)
        out = torch.einsum("bhnm,bhdm->bhdn", attn, v).reshape(n, c, h, w)
        return self.proj(out)


class AdvancedAttentionGate(nn.Module):
    def __init__(self, f_g, f_l, f_int):
        super().__init__()
        self.W_g = nn.Sequential(conv(f_g, f_int, 1), norm(f_int))
        self.W_x = nn.Sequential(conv(f_l, f_int, 1), norm(f_int))
        self.psi = nn.Sequential(conv(f_int, 1, 1, bias=True), norm(1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=False)
        self.refine = TripletAttention()

    def forward(self, g, x):
        psi = self.psi(self.relu(self.W_g(g) + self.W_x(x)))
        return self.refine(x * psi)


class AdvancedResUNet(nn.Module):
    def __init__(self, in_channels=3, out_channels=1, features=(20, 40, 80, 160), dropout=0.1, heads=8):
        super().__init__()
        f1, f2, f3, f4 = [int(f) for f in features]
        self.features = [f1, f2, f3, f4]
        arb = lambda a, b: AdvancedResidualBlock(a, b, dropout)  # noqa: E731
        self.init_conv = nn.Sequential(conv(in_channels, f1, 7), norm(f1), nn.ReLU(inplace=False))
        self.encoder1 = nn.Sequential(arb(f1, f1), arb(f1, f1))
        self.encoder2 = nn.Sequential(arb(f1, f2), arb(f2, f2))
        self.encoder3 = nn.Sequential(arb(f2, f3), arb(f3, f3), arb(f3, f3))
        self.encoder4 = nn.Sequential(arb(f3, f4), arb(f4, f4), arb(f4, f4))
        self.bottleneck = nn.Sequential(arb(f4, 2 * f4), LightweightSelfAttention(2 * f4, heads), arb(2 * f4, 2 * f4))
        self.upconv4, self.att4, self.decoder4 = up(2 * f4, f4), AdvancedAttentionGate(f4, f4, f4 // 2), nn.Sequential(arb(2 * f4, f4), arb(f4, f4))
        self.upconv3, self.att3, self.decoder3 = up(f4, f3), AdvancedAttentionGate(f3, f3, f3 // 2), nn.Sequential(arb(2 * f3, f3), arb(f3, f3))
        self.upconv2, self.att2, self.decoder2 = up(f3, f2), AdvancedAttentionGate(f2, f2, f2 // 2), nn.Sequential(arb(2 * f2, f2), arb(f2, f2))
        self.upconv1, self.att1, self.decoder1 = up(f2, f1), AdvancedAttentionGate(f1, f1, f1 // 2), nn.Sequential(arb(2 * f1, f1), arb(f1, f1))
        self.final_conv = nn.Sequential(conv(f1, f1 // 2, 3), norm(f1 // 2), nn.ReLU(inplace=False),
                                        nn.Conv2d(f1 // 2, out_channels, 1, bias=True))
        self.pool = nn.MaxPool2d(2, 2)

    def _decode(self, d, skip, upconv, att, decoder):
        # sluice: resize to the skip's size when they differ (the original fails there).
        d = resize_if_needed(upconv(d), skip.shape[-2:])
        return decoder(torch.cat([att(d, skip), d], dim=1))

    def forward(self, x):
        size = x.shape[-2:]
        x = self.init_conv(x)
        e1 = self.encoder1(x)
        e2 = self.encoder2(self.pool(e1))
        e3 = self.encoder3(self.pool(e2))
        e4 = self.encoder4(self.pool(e3))
        d = self.bottleneck(self.pool(e4))
        d = self._decode(d, e4, self.upconv4, self.att4, self.decoder4)
        d = self._decode(d, e3, self.upconv3, self.att3, self.decoder3)
        d = self._decode(d, e2, self.upconv2, self.att2, self.decoder2)
        d = self._decode(d, e1, self.upconv1, self.att1, self.decoder1)
        return resize_if_needed(self.final_conv(d), size)


# ---------------------------------------------------------------------------------------------
# D. CBAM-ResUNet

class ChannelAttention(nn.Module):
    """x * sigmoid(MLP(avg) + MLP(max)) with one shared MLP. Keys: shared_mlp.0, shared_mlp.2."""

    def __init__(self, channels):
        super().__init__()
        hidden = max(channels // 16, 8)
        self.shared_mlp = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=False),
                                        nn.Linear(hidden, channels, bias=False))

    def forward(self, x):
        a = self.shared_mlp(x.mean(dim=(2, 3))) + self.shared_mlp(x.amax(dim=(2, 3)))
        return x * torch.sigmoid(a)[:, :, None, None]


class CBAM(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.channel_attention = ChannelAttention(channels)
        self.spatial_attention = SpatialAttention()

    def forward(self, x):
        return self.spatial_attention(self.channel_attention(x))


class CBAMResidualBlock(nn.Module):
    def __init__(self, cin, cout, dropout=0.1):
        super().__init__()
        self.conv1 = conv(cin, cout, 3)
        self.norm1 = norm(cout)
        self.conv2 = conv(cout, cout, 3)
        self.norm2 = norm(cout)
        self.relu = nn.ReLU(inplace=False)
        self.dropout = nn.Dropout2d(dropout)
        self.adjust_channels = nn.Sequential(conv(cin, cout, 1), norm(cout)) if cin != cout else None
        self.cbam = CBAM(cout)

    def forward(self, x):
        identity = x if self.adjust_channels is None else self.adjust_channels(x)
        out = self.dropout(self.relu(self.norm1(self.conv1(x))))
        out = self.dropout(self.norm2(self.conv2(out)))
        return self.cbam(self.relu(out + identity))


class CBAMAttentionGate(nn.Module):
    def __init__(self, f_g, f_l, f_int):
        super().__init__()
        self.W_g = nn.Sequential(conv(f_g, f_int, 1, bias=True), norm(f_int))
        self.W_x = nn.Sequential(conv(f_l, f_int, 1, bias=True), norm(f_int))
        self.psi = nn.Sequential(conv(f_int, 1, 1, bias=True), norm(1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=False)

    def forward(self, g, x):
        return x * self.psi(self.relu(self.W_g(g) + self.W_x(x)))


class CBAMResUNet(nn.Module):
    def __init__(self, in_channels=3, out_channels=1, features=(64, 128, 256, 512), dropout=0.1):
        super().__init__()
        features = [int(f) for f in features]
        self.features = features
        f0 = features[0]
        self.init_conv = nn.Sequential(conv(in_channels, f0, 3), norm(f0), nn.ReLU(inplace=False),
                                       nn.Dropout2d(dropout))
        self.downs = nn.ModuleList()
        cin = f0
        for f in features:
            self.downs.append(CBAMResidualBlock(cin, f, dropout))
            cin = f
        width = features[-1] * 2
        self.bottleneck = nn.Sequential(CBAMResidualBlock(cin, width, dropout),
                                        CBAMResidualBlock(width, width, dropout))
        self.ups = nn.ModuleList()
        self.attentions = nn.ModuleList()
        prev = width
        for f in reversed(features):
            self.ups.append(up(prev, f))
            self.ups.append(CBAMResidualBlock(2 * f, f, dropout))
            self.attentions.append(CBAMAttentionGate(f, f, f // 2))
            prev = f
        self.final_conv = nn.Sequential(conv(f0, f0 // 2, 3), norm(f0 // 2), nn.ReLU(inplace=False),
                                        nn.Dropout2d(dropout), nn.Conv2d(f0 // 2, out_channels, 1, bias=True))
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x):
        size = x.shape[-2:]
        x = self.init_conv(x)
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for i, skip in enumerate(reversed(skips)):
            x = resize_if_needed(self.ups[2 * i](x), skip.shape[-2:])
            a = self.attentions[i](x, skip)
            x = self.ups[2 * i + 1](torch.cat([a, x], dim=1))
        return resize_if_needed(self.final_conv(x), size)


# ---------------------------------------------------------------------------------------------

_CLASSES = {
    "hrnet": HRNetV2,
    "resunet_small": ResUNetSmall,
    "advanced_resunet": AdvancedResUNet,
    "cbam_resunet": CBAMResUNet,
}
NAMES = tuple(_CLASSES)


def build(name, **kwargs):
    """build("hrnet", widths=[18, 36, 72, 144]); build("cbam_resunet", features=[...]); ..."""
    try:
        cls = _CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; known: {', '.join(NAMES)}") from None
    return cls(**kwargs)
