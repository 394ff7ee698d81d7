// tests/support/cpu_reference.hpp: naive double-precision loop references of every CPU backend operation,
// written straight from the definitions (PyTorch's semantics), and helpers to compare against them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <random>
#include <vector>

#include "sluice/core/layer_specs.hpp"
#include "sluice/core/shape.hpp"
#include "sluice/weights/host_tensor.hpp"

namespace sluice::cpu::test {

struct Ref {
  Shape s;
  std::vector<double> v;
  explicit Ref(Shape shape = {}) : s(shape), v(static_cast<std::size_t>(shape.numel()), 0.0) {}
  double& at(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
    return v[static_cast<std::size_t>(((n * s.c + c) * s.h + h) * s.w + w)];
  }
  double at(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) const {
    return v[static_cast<std::size_t>(((n * s.c + c) * s.h + h) * s.w + w)];
  }
};

inline std::vector<float> random_values(std::size_t count, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(count);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline weights::HostTensor random_host(std::vector<std::int64_t> shape, std::mt19937& rng, float scale = 1.0f) {
  weights::HostTensor t;
  t.shape = std::move(shape);
  t.data = random_values(static_cast<std::size_t>(t.numel()), rng, -scale, scale);
  return t;
}

inline Ref to_ref(const std::vector<float>& v, const Shape& s) {
  Ref r(s);
  std::copy(v.begin(), v.end(), r.v.begin());
  return r;
}

inline double act(double v, Activation a) {
  switch (a) {
    case Activation::relu: return v > 0 ? v : 0;
    case Activation::sigmoid: return 1.0 / (1.0 + std::exp(-v));
    case Activation::none: break;
  }
  return v;
}

inline Ref conv2d(const Ref& x, const WeightView& w, const WeightView* bias, const ConvSpec& sp,
                  Activation a) {
  const std::int64_t out = w.shape[0], cin_g = w.shape[1], kh = w.shape[2], kw = w.shape[3];
  const std::int64_t cout_g = out / sp.groups;
  const std::int64_t oh = (x.s.h + 2 * sp.pad_h - sp.dilation_h * (kh - 1) - 1) / sp.stride_h + 1;
  const std::int64_t ow = (x.s.w + 2 * sp.pad_w - sp.dilation_w * (kw - 1) - 1) / sp.stride_w + 1;
  Ref y({x.s.n, out, oh, ow});
  for (std::int64_t n = 0; n < x.s.n; ++n)
    for (std::int64_t co = 0; co < out; ++co) {
      const std::int64_t g = co / cout_g;
      for (std::int64_t i = 0; i < oh; ++i)
        for (std::int64_t j = 0; j < ow; ++j) {
          double sum = bias ? bias->data[static_cast<std::size_t>(co)] : 0.0;
          for (std::int64_t ci = 0; ci < cin_g; ++ci)
            for (std::int64_t ky = 0; ky < kh; ++ky)
              for (std::int64_t kx = 0; kx < kw; ++kx) {
                const std::int64_t ih = i * sp.stride_h - sp.pad_h + ky * sp.dilation_h;
                const std::int64_t iw = j * sp.stride_w - sp.pad_w + kx * sp.dilation_w;
                if (ih < 0 || ih >= x.s.h || iw < 0 || iw >= x.s.w) continue;
                sum += x.at(n, g * cin_g + ci, ih, iw) *
                       w.data[static_cast<std::size_t>(((co * cin_g + ci) * kh + ky) * kw + kx)];
              }
          y.at(n, co, i, j) = act(sum, a);
        }
    }
  return y;
}

/// ConvTranspose2d(k=2, s=2): y[co, 2i+a, 2j+b] = bias + sum_ci x[ci, i, j] w[ci, co, a, b].
inline Ref conv_transpose2x2(const Ref& x, const WeightView& w, const WeightView* bias) {
  const std::int64_t out = w.shape[1];
  Ref y({x.s.n, out, 2 * x.s.h, 2 * x.s.w});
  for (std::int64_t n = 0; n < x.s.n; ++n)
    for (std::int64_t co = 0; co < out; ++co)
      for (std::int64_t i = 0; i < y.s.h; ++i)
        for (std::int64_t j = 0; j < y.s.w; ++j) {
          double sum = bias ? bias->data[static_cast<std::size_t>(co)] : 0.0;
          for (std::int64_t ci = 0; ci < x.s.c; ++ci)
            sum += x.at(n, ci, i / 2, j / 2) *
                   w.data[static_cast<std::size_t>(((ci * out + co) * 2 + i % 2) * 2 + j % 2)];
          y.at(n, co, i, j) = sum;
        }
  return y;
}

inline void plane_moments(const Ref& x, std::int64_t n, std::int64_t c, double& mean, double& var) {
  double s = 0, q = 0;
  for (std::int64_t i = 0; i < x.s.h; ++i)
    for (std::int64_t j = 0; j < x.s.w; ++j) s += x.at(n, c, i, j);
  mean = s / static_cast<double>(x.s.plane());
  for (std::int64_t i = 0; i < x.s.h; ++i)
    for (std::int64_t j = 0; j < x.s.w; ++j) q += (x.at(n, c, i, j) - mean) * (x.at(n, c, i, j) - mean);
  var = q / static_cast<double>(x.s.plane());
}

inline Ref instance_norm(const Ref& x, const WeightView& gamma, const WeightView& beta, const Ref* residual,
                         Activation a) {
  Ref y(x.s);
  for (std::int64_t n = 0; n < x.s.n; ++n)
    for (std::int64_t c = 0; c < x.s.c; ++c) {
      double mean, var;
      plane_moments(x, n, c, mean, var);
      for (std::int64_t i = 0; i < x.s.h; ++i)
        for (std::int64_t j = 0; j < x.s.w; ++j) {
          double v = gamma.data[static_cast<std::size_t>(c)] * (x.at(n, c, i, j) - mean) / std::sqrt(var + 1e-5) +
                     beta.data[static_cast<std::size_t>(c)];
          if (residual) v += residual->at(n, c, i, j);
          y.at(n, c, i, j) = act(v, a);
        }
    }
  return y;
}

inline Ref simam(const Ref& x, double eps) {
  Ref y(x.s);
  for (std::int64_t n = 0; n < x.s.n; ++n)
    for (std::int64_t c = 0; c < x.s.c; ++c) {
      double mean, var;
      plane_moments(x, n, c, mean, var);
      for (std::int64_t i = 0; i < x.s.h; ++i)
        for (std::int64_t j = 0; j < x.s.w; ++j) {
          const double v = x.at(n, c, i, j);
          y.at(n, c, i, j) = v / (1.0 + std::exp((v - mean) / std::sqrt(var + eps)));
        }
    }
  return y;
}

/// PyTorch's bilinear source index along one axis (no scale_factor given).
inline void bilinear_source(std::int64_t dst, std::int64_t in, std::int64_t out, bool ac, std::int64_t& i0,
                            std::int64_t& i1, double& lambda) {
  double src;
  if (ac) {
    src = out > 1 ? static_cast<double>(dst) * static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
  } else {
    src = (static_cast<double>(dst) + 0.5) * static_cast<double>(in) / static_cast<double>(out) - 0.5;
    if (src < 0) src = 0;
  }
  i0 = std::min(static_cast<std::int64_t>(std::floor(src)), in - 1);
  i1 = std::min(i0 + 1, in - 1);
  lambda = std::clamp(src - static_cast<double>(i0), 0.0, 1.0);
}

inline Ref resize_bilinear(const Ref& x, std::int64_t oh, std::int64_t ow, bool ac) {
  Ref y({x.s.n, x.s.c, oh, ow});
  for (std::int64_t n = 0; n < x.s.n; ++n)
    for (std::int64_t c = 0; c < x.s.c; ++c)
      for (std::int64_t i = 0; i < oh; ++i)
        for (std::int64_t j = 0; j < ow; ++j) {
          std::int64_t y0, y1, x0, x1;
          double ly, lx;
          bilinear_source(i, x.s.h, oh, ac, y0, y1, ly);
          bilinear_source(j, x.s.w, ow, ac, x0, x1, lx);
          y.at(n, c, i, j) = (1 - ly) * ((1 - lx) * x.at(n, c, y0, x0) + lx * x.at(n, c, y0, x1)) +
                             ly * ((1 - lx) * x.at(n, c, y1, x0) + lx * x.at(n, c, y1, x1));
        }
  return y;
}

/// x * g, g broadcast along each of its dimensions that is 1.
inline Ref mul_broadcast(const Ref& x, const Ref& g) {
  Ref y(x.s);
  for (std::int64_t n = 0; n < x.s.n; ++n)
    for (std::int64_t c = 0; c < x.s.c; ++c)
      for (std::int64_t h = 0; h < x.s.h; ++h)
        for (std::int64_t w = 0; w < x.s.w; ++w)
          y.at(n, c, h, w) = x.at(n, c, h, w) * g.at(n, g.s.c == 1 ? 0 : c, g.s.h == 1 ? 0 : h, g.s.w == 1 ? 0 : w);
  return y;
}

/// The parts stacked along channels, in order.
inline Ref concat(std::initializer_list<const Ref*> parts) {
  Shape s = (*parts.begin())->s;
  s.c = 0;
  for (const Ref* p : parts) s.c += p->s.c;
  Ref y(s);
  std::int64_t offset = 0;
  for (const Ref* p : parts) {
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t c = 0; c < p->s.c; ++c)
        for (std::int64_t h = 0; h < s.h; ++h)
          for (std::int64_t w = 0; w < s.w; ++w) y.at(n, offset + c, h, w) = p->at(n, c, h, w);
    offset += p->s.c;
  }
  return y;
}

inline Ref max_pool2x2(const Ref& x) {
  Ref y({x.s.n, x.s.c, x.s.h / 2, x.s.w / 2});
  for (std::int64_t n = 0; n < x.s.n; ++n)
    for (std::int64_t c = 0; c < x.s.c; ++c)
      for (std::int64_t i = 0; i < y.s.h; ++i)
        for (std::int64_t j = 0; j < y.s.w; ++j)
          y.at(n, c, i, j) = std::max({x.at(n, c, 2 * i, 2 * j), x.at(n, c, 2 * i, 2 * j + 1),
                                       x.at(n, c, 2 * i + 1, 2 * j), x.at(n, c, 2 * i + 1, 2 * j + 1)});
  return y;
}

/// Mean (or max) over the axes whose output size is 1: dims marked true are reduced.
inline Ref reduce(const Ref& x, bool rc, bool rh, bool rw, bool max) {
  Ref y({x.s.n, rc ? 1 : x.s.c, rh ? 1 : x.s.h, rw ? 1 : x.s.w});
  std::vector<double> count(y.v.size(), 0.0);
  std::fill(y.v.begin(), y.v.end(), max ? -std::numeric_limits<double>::infinity() : 0.0);
  for (std::int64_t n = 0; n < x.s.n; ++n)
    for (std::int64_t c = 0; c < x.s.c; ++c)
      for (std::int64_t i = 0; i < x.s.h; ++i)
        for (std::int64_t j = 0; j < x.s.w; ++j) {
          double& o = y.at(n, rc ? 0 : c, rh ? 0 : i, rw ? 0 : j);
          o = max ? std::max(o, x.at(n, c, i, j)) : o + x.at(n, c, i, j);
        }
  if (!max) {
    const double k = static_cast<double>((rc ? x.s.c : 1) * (rh ? x.s.h : 1) * (rw ? x.s.w : 1));
    for (auto& v : y.v) v /= k;
  }
  return y;
}

/// [mean over C, max over C] as two channels.
inline Ref channel_mean_max(const Ref& x) {
  const Ref mean = reduce(x, true, false, false, false), most = reduce(x, true, false, false, true);
  Ref y({x.s.n, 2, x.s.h, x.s.w});
  for (std::int64_t n = 0; n < x.s.n; ++n)
    for (std::int64_t h = 0; h < x.s.h; ++h)
      for (std::int64_t w = 0; w < x.s.w; ++w) {
        y.at(n, 0, h, w) = mean.at(n, 0, h, w);
        y.at(n, 1, h, w) = most.at(n, 0, h, w);
      }
  return y;
}

inline Ref linear(const Ref& x, const WeightView& w, const WeightView* bias, Activation a) {
  const std::int64_t out = w.shape[0], in = w.shape[1];
  Ref y({x.s.n, out, 1, 1});
  for (std::int64_t n = 0; n < x.s.n; ++n)
    for (std::int64_t o = 0; o < out; ++o) {
      double s = bias ? bias->data[static_cast<std::size_t>(o)] : 0.0;
      for (std::int64_t i = 0; i < in; ++i) s += w.data[static_cast<std::size_t>(o * in + i)] * x.at(n, i, 0, 0);
      y.at(n, o, 0, 0) = act(s, a);
    }
  return y;
}

/// softmax(q k^T / sqrt(d)) v per head over row-major tokens; output channel h*d + j.
inline Ref self_attention(const Ref& qkv, std::int64_t heads) {
  const std::int64_t c = qkv.s.c / 3, d = c / heads, t = qkv.s.plane();
  Ref y({qkv.s.n, c, qkv.s.h, qkv.s.w});
  auto tok = [&](std::int64_t n, std::int64_t ch, std::int64_t p) {
    return qkv.v[static_cast<std::size_t>((n * qkv.s.c + ch) * t + p)];
  };
  std::vector<double> score(static_cast<std::size_t>(t));
  for (std::int64_t n = 0; n < qkv.s.n; ++n)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < t; ++i) {
        double mx = -std::numeric_limits<double>::infinity();
        for (std::int64_t k = 0; k < t; ++k) {
          double s = 0;
          for (std::int64_t j = 0; j < d; ++j) s += tok(n, h * d + j, i) * tok(n, c + h * d + j, k);
          score[static_cast<std::size_t>(k)] = s / std::sqrt(static_cast<double>(d));
          mx = std::max(mx, score[static_cast<std::size_t>(k)]);
        }
        double z = 0;
        for (auto& s : score) z += (s = std::exp(s - mx));
        for (std::int64_t j = 0; j < d; ++j) {
          double o = 0;
          for (std::int64_t k = 0; k < t; ++k) o += score[static_cast<std::size_t>(k)] * tok(n, 2 * c + h * d + j, k);
          y.v[static_cast<std::size_t>((n * c + h * d + j) * t + i)] = o / z;
        }
      }
  return y;
}

/// max |got - want|, and max |want| (the scale that tolerances are relative to).
struct Diff {
  double max_abs = 0, scale = 0;
};
inline Diff diff(const std::vector<float>& got, const Ref& want) {
  Diff d;
  for (std::size_t i = 0; i < got.size(); ++i) {
    d.max_abs = std::max(d.max_abs, std::abs(static_cast<double>(got[i]) - want.v[i]));
    d.scale = std::max(d.scale, std::abs(want.v[i]));
  }
  if (got.size() != want.v.size()) d.max_abs = std::numeric_limits<double>::infinity();
  return d;
}

}  // namespace sluice::cpu::test
