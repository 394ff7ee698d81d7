// tests/support/reference_backend.hpp: a naive Backend for the network tests -- plain NCHW loops
// that accumulate in double, written for obviousness, not speed. It is independent of the CPU
// backend, so the networks can be checked against PyTorch goldens on it, and its move-only
// tensors catch a network that copies activations by accident.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <vector>

#include "sluice/core/backend.hpp"
#include "sluice/core/error.hpp"

namespace sluice::test {

class ReferenceBackend {
 public:
  struct tensor_type {
    tensor_type() = default;
    explicit tensor_type(const Shape& s) : shape(s), data(static_cast<std::size_t>(s.numel()), 0.0f) {}
    tensor_type(tensor_type&&) = default;
    tensor_type& operator=(tensor_type&&) = default;
    tensor_type(const tensor_type&) = delete;
    tensor_type& operator=(const tensor_type&) = delete;

    float& at(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
      return data[static_cast<std::size_t>(((n * shape.c + c) * shape.h + h) * shape.w + w)];
    }
    float at(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) const {
      return data[static_cast<std::size_t>(((n * shape.c + c) * shape.h + h) * shape.w + w)];
    }
    Shape shape;
    std::vector<float> data;
  };
  struct conv_type {
    std::vector<float> weight, bias;  // bias empty: none
    std::int64_t out = 0, in_per_group = 0, kh = 0, kw = 0;
    ConvSpec spec;
  };
  struct conv_transpose_type {
    std::vector<float> weight, bias;
    std::int64_t in = 0, out = 0;
  };
  struct norm_type {
    std::vector<float> gamma, beta;
  };
  struct linear_type {
    std::vector<float> weight, bias;
    std::int64_t out = 0, in = 0;
  };

  // ---- base ----
  tensor_type upload(std::span<const float> src, const Shape& shape) {
    require(static_cast<std::int64_t>(src.size()) == shape.numel(), "upload: size does not match the shape");
    tensor_type t(shape);
    std::copy(src.begin(), src.end(), t.data.begin());
    return t;
  }
  void download(const tensor_type& t, std::span<float> dst) {
    require(dst.size() == t.data.size(), "download: size does not match");
    std::copy(t.data.begin(), t.data.end(), dst.begin());
  }
  Shape shape_of(const tensor_type& t) const { return t.shape; }
  void synchronize() {}
  MemoryStats memory() const { return {}; }
  void reset_peak() {}

  // ---- weights ----
  conv_type make_conv(const WeightView& w, const WeightView* bias, const ConvSpec& spec) {
    require(w.shape.size() == 4, "make_conv: weight must be 4-d");
    conv_type c{copy(w), copy(bias), w.shape[0], w.shape[1], w.shape[2], w.shape[3], spec};
    return c;
  }
  conv_transpose_type make_conv_transpose2x2(const WeightView& w, const WeightView* bias) {
    return {copy(w), copy(bias), w.shape[0], w.shape[1]};
  }
  norm_type make_norm(const WeightView& gamma, const WeightView& beta) { return {copy(gamma), copy(beta)}; }
  linear_type make_linear(const WeightView& w, const WeightView* bias) {
    return {copy(w), copy(bias), w.shape[0], w.shape[1]};
  }
  static std::vector<float> copy(const WeightView& v) { return {v.data.begin(), v.data.end()}; }
  static std::vector<float> copy(const WeightView* v) { return v ? copy(*v) : std::vector<float>{}; }

  // ---- ops ----
  tensor_type conv2d(const tensor_type& x, const conv_type& c, Activation act) {
    const Shape s = x.shape;
    const ConvSpec& p = c.spec;
    require(s.c == c.in_per_group * p.groups, "conv2d: channel mismatch");
    const std::int64_t oh = (s.h + 2 * p.pad_h - p.dilation_h * (c.kh - 1) - 1) / p.stride_h + 1;
    const std::int64_t ow = (s.w + 2 * p.pad_w - p.dilation_w * (c.kw - 1) - 1) / p.stride_w + 1;
    tensor_type y(Shape{s.n, c.out, oh, ow});
    const std::int64_t out_per_group = c.out / p.groups;
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t o = 0; o < c.out; ++o) {
        const std::int64_t g = o / out_per_group;
        for (std::int64_t i = 0; i < oh; ++i)
          for (std::int64_t j = 0; j < ow; ++j) {
            double acc = c.bias.empty() ? 0.0 : c.bias[static_cast<std::size_t>(o)];
            for (std::int64_t ci = 0; ci < c.in_per_group; ++ci)
              for (std::int64_t a = 0; a < c.kh; ++a) {
                const std::int64_t yy = i * p.stride_h - p.pad_h + a * p.dilation_h;
                if (yy < 0 || yy >= s.h) continue;
                for (std::int64_t bb = 0; bb < c.kw; ++bb) {
                  const std::int64_t xx = j * p.stride_w - p.pad_w + bb * p.dilation_w;
                  if (xx < 0 || xx >= s.w) continue;
                  const double wv = c.weight[static_cast<std::size_t>(((o * c.in_per_group + ci) * c.kh + a) * c.kw + bb)];
                  acc += wv * x.at(n, g * c.in_per_group + ci, yy, xx);
                }
              }
            y.at(n, o, i, j) = apply(acc, act);
          }
      }
    return y;
  }

  tensor_type conv_transpose2x2(const tensor_type& x, const conv_transpose_type& u) {
    const Shape s = x.shape;
    require(s.c == u.in, "conv_transpose2x2: channel mismatch");
    tensor_type y(Shape{s.n, u.out, 2 * s.h, 2 * s.w});
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t o = 0; o < u.out; ++o)
        for (std::int64_t i = 0; i < 2 * s.h; ++i)
          for (std::int64_t j = 0; j < 2 * s.w; ++j) {
            double acc = u.bias.empty() ? 0.0 : u.bias[static_cast<std::size_t>(o)];
            for (std::int64_t ci = 0; ci < u.in; ++ci)
              acc += static_cast<double>(u.weight[static_cast<std::size_t>(((ci * u.out + o) * 2 + i % 2) * 2 + j % 2)]) *
                     x.at(n, ci, i / 2, j / 2);
            y.at(n, o, i, j) = static_cast<float>(acc);
          }
    return y;
  }

  tensor_type instance_norm(const tensor_type& x, const norm_type& nm, NormEpilogue epi) {
    const Shape s = x.shape;
    const auto* residual = static_cast<const tensor_type*>(epi.residual);
    require(!residual || residual->shape == s, "instance_norm: residual shape mismatch");
    tensor_type y(s);
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t c = 0; c < s.c; ++c) {
        const auto [mean, var] = moments(x, n, c);
        const double inv = 1.0 / std::sqrt(var + 1e-5);
        for (std::int64_t i = 0; i < s.h; ++i)
          for (std::int64_t j = 0; j < s.w; ++j) {
            double v = nm.gamma[static_cast<std::size_t>(c)] * (x.at(n, c, i, j) - mean) * inv +
                       nm.beta[static_cast<std::size_t>(c)];
            if (residual) v += residual->at(n, c, i, j);
            y.at(n, c, i, j) = apply(v, epi.activation);
          }
      }
    return y;
  }

  tensor_type activation(const tensor_type& x, Activation act) {
    tensor_type y(x.shape);
    for (std::size_t i = 0; i < y.data.size(); ++i) y.data[i] = apply(x.data[i], act);
    return y;
  }
  tensor_type add(const tensor_type& a, const tensor_type& b, Activation act) {
    require(a.shape == b.shape, "add: shape mismatch");
    tensor_type y(a.shape);
    for (std::size_t i = 0; i < y.data.size(); ++i) y.data[i] = apply(static_cast<double>(a.data[i]) + b.data[i], act);
    return y;
  }
  tensor_type mul(const tensor_type& x, const tensor_type& g) {
    const Shape s = x.shape, t = g.shape;
    require(t.n == s.n && (t.c == s.c || t.c == 1) && (t.h == s.h || t.h == 1) && (t.w == s.w || t.w == 1),
            "mul: cannot broadcast");
    tensor_type y(s);
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t c = 0; c < s.c; ++c)
        for (std::int64_t i = 0; i < s.h; ++i)
          for (std::int64_t j = 0; j < s.w; ++j)
            y.at(n, c, i, j) = x.at(n, c, i, j) * g.at(n, t.c == 1 ? 0 : c, t.h == 1 ? 0 : i, t.w == 1 ? 0 : j);
    return y;
  }
  tensor_type concat(std::initializer_list<const tensor_type*> parts) {
    Shape s = (*parts.begin())->shape;
    s.c = 0;
    for (const auto* p : parts) {
      require(p->shape.n == s.n && p->shape.h == s.h && p->shape.w == s.w, "concat: shape mismatch");
      s.c += p->shape.c;
    }
    tensor_type y(s);
    for (std::int64_t n = 0; n < s.n; ++n) {
      std::int64_t c0 = 0;
      for (const auto* p : parts) {
        for (std::int64_t c = 0; c < p->shape.c; ++c)
          for (std::int64_t i = 0; i < s.h; ++i)
            for (std::int64_t j = 0; j < s.w; ++j) y.at(n, c0 + c, i, j) = p->at(n, c, i, j);
        c0 += p->shape.c;
      }
    }
    return y;
  }
  tensor_type max_pool2x2(const tensor_type& x) {
    const Shape s = x.shape;
    tensor_type y(Shape{s.n, s.c, s.h / 2, s.w / 2});
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t c = 0; c < s.c; ++c)
        for (std::int64_t i = 0; i < s.h / 2; ++i)
          for (std::int64_t j = 0; j < s.w / 2; ++j)
            y.at(n, c, i, j) = std::max({x.at(n, c, 2 * i, 2 * j), x.at(n, c, 2 * i, 2 * j + 1),
                                         x.at(n, c, 2 * i + 1, 2 * j), x.at(n, c, 2 * i + 1, 2 * j + 1)});
    return y;
  }
  // PyTorch's bilinear sampling: align_corners maps corner to corner; otherwise half-pixel centres
  // with negative source coordinates clamped to 0.
  tensor_type resize_bilinear(const tensor_type& x, std::int64_t oh, std::int64_t ow, bool align_corners) {
    const Shape s = x.shape;
    tensor_type y(Shape{s.n, s.c, oh, ow});
    auto source = [align_corners](std::int64_t o, std::int64_t in, std::int64_t out) {
      if (align_corners) return out > 1 ? static_cast<double>(o) * (in - 1) / (out - 1) : 0.0;
      return std::max(0.0, (o + 0.5) * static_cast<double>(in) / out - 0.5);
    };
    for (std::int64_t i = 0; i < oh; ++i) {
      const double sy = source(i, s.h, oh);
      const std::int64_t y0 = std::min(static_cast<std::int64_t>(sy), s.h - 1), y1 = std::min(y0 + 1, s.h - 1);
      const double fy = sy - y0;
      for (std::int64_t j = 0; j < ow; ++j) {
        const double sx = source(j, s.w, ow);
        const std::int64_t x0 = std::min(static_cast<std::int64_t>(sx), s.w - 1), x1 = std::min(x0 + 1, s.w - 1);
        const double fx = sx - x0;
        for (std::int64_t n = 0; n < s.n; ++n)
          for (std::int64_t c = 0; c < s.c; ++c)
            y.at(n, c, i, j) = static_cast<float>(
                (1 - fy) * ((1 - fx) * x.at(n, c, y0, x0) + fx * x.at(n, c, y0, x1)) +
                fy * ((1 - fx) * x.at(n, c, y1, x0) + fx * x.at(n, c, y1, x1)));
      }
    }
    return y;
  }
  tensor_type global_avg_pool(const tensor_type& x) {
    tensor_type y(Shape{x.shape.n, x.shape.c, 1, 1});
    for (std::int64_t n = 0; n < x.shape.n; ++n)
      for (std::int64_t c = 0; c < x.shape.c; ++c) y.at(n, c, 0, 0) = static_cast<float>(moments(x, n, c).first);
    return y;
  }
  tensor_type global_max_pool(const tensor_type& x) {
    tensor_type y(Shape{x.shape.n, x.shape.c, 1, 1});
    for (std::int64_t n = 0; n < x.shape.n; ++n)
      for (std::int64_t c = 0; c < x.shape.c; ++c) {
        float m = -std::numeric_limits<float>::infinity();
        for (std::int64_t i = 0; i < x.shape.h; ++i)
          for (std::int64_t j = 0; j < x.shape.w; ++j) m = std::max(m, x.at(n, c, i, j));
        y.at(n, c, 0, 0) = m;
      }
    return y;
  }
  tensor_type channel_mean_max(const tensor_type& x) {
    const Shape s = x.shape;
    tensor_type y(Shape{s.n, 2, s.h, s.w});
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t i = 0; i < s.h; ++i)
        for (std::int64_t j = 0; j < s.w; ++j) {
          double sum = 0;
          float m = -std::numeric_limits<float>::infinity();
          for (std::int64_t c = 0; c < s.c; ++c) {
            sum += x.at(n, c, i, j);
            m = std::max(m, x.at(n, c, i, j));
          }
          y.at(n, 0, i, j) = static_cast<float>(sum / s.c);
          y.at(n, 1, i, j) = m;
        }
    return y;
  }
  tensor_type mean_over_w(const tensor_type& x) {
    const Shape s = x.shape;
    tensor_type y(Shape{s.n, s.c, s.h, 1});
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t c = 0; c < s.c; ++c)
        for (std::int64_t i = 0; i < s.h; ++i) {
          double sum = 0;
          for (std::int64_t j = 0; j < s.w; ++j) sum += x.at(n, c, i, j);
          y.at(n, c, i, 0) = static_cast<float>(sum / s.w);
        }
    return y;
  }
  tensor_type mean_over_h(const tensor_type& x) {
    const Shape s = x.shape;
    tensor_type y(Shape{s.n, s.c, 1, s.w});
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t c = 0; c < s.c; ++c)
        for (std::int64_t j = 0; j < s.w; ++j) {
          double sum = 0;
          for (std::int64_t i = 0; i < s.h; ++i) sum += x.at(n, c, i, j);
          y.at(n, c, 0, j) = static_cast<float>(sum / s.h);
        }
    return y;
  }
  tensor_type linear(const tensor_type& x, const linear_type& l, Activation act) {
    require(x.shape.c == l.in && x.shape.h == 1 && x.shape.w == 1, "linear: shape mismatch");
    tensor_type y(Shape{x.shape.n, l.out, 1, 1});
    for (std::int64_t n = 0; n < x.shape.n; ++n)
      for (std::int64_t o = 0; o < l.out; ++o) {
        double acc = l.bias.empty() ? 0.0 : l.bias[static_cast<std::size_t>(o)];
        for (std::int64_t i = 0; i < l.in; ++i)
          acc += static_cast<double>(l.weight[static_cast<std::size_t>(o * l.in + i)]) * x.at(n, i, 0, 0);
        y.at(n, o, 0, 0) = apply(acc, act);
      }
    return y;
  }
  tensor_type simam(const tensor_type& x, float eps) {
    const Shape s = x.shape;
    tensor_type y(s);
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t c = 0; c < s.c; ++c) {
        const auto [mean, var] = moments(x, n, c);
        for (std::int64_t i = 0; i < s.h; ++i)
          for (std::int64_t j = 0; j < s.w; ++j) {
            const double v = x.at(n, c, i, j);
            y.at(n, c, i, j) = static_cast<float>(v * sigmoid(-(v - mean) / std::sqrt(var + eps)));
          }
      }
    return y;
  }
  // The whole token x token matrix, one row at a time: fine for the small tests it serves.
  tensor_type self_attention(const tensor_type& qkv, std::int64_t heads) {
    const Shape s = qkv.shape;
    require(s.c % 3 == 0 && (s.c / 3) % heads == 0, "self_attention: bad channel count");
    const std::int64_t dim = s.c / 3, d = dim / heads, tokens = s.h * s.w;
    tensor_type y(Shape{s.n, dim, s.h, s.w});
    auto v_at = [&](std::int64_t n, std::int64_t c, std::int64_t t) {
      return static_cast<double>(qkv.data[static_cast<std::size_t>((n * s.c + c) * tokens + t)]);
    };
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    std::vector<double> row(static_cast<std::size_t>(tokens));
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t t = 0; t < tokens; ++t) {
          double top = -std::numeric_limits<double>::infinity();
          for (std::int64_t u = 0; u < tokens; ++u) {
            double dot = 0;
            for (std::int64_t j = 0; j < d; ++j) dot += v_at(n, h * d + j, t) * v_at(n, dim + h * d + j, u);
            row[static_cast<std::size_t>(u)] = dot * scale;
            top = std::max(top, dot * scale);
          }
          double z = 0;
          for (auto& r : row) z += (r = std::exp(r - top));
          for (std::int64_t j = 0; j < d; ++j) {
            double acc = 0;
            for (std::int64_t u = 0; u < tokens; ++u) acc += row[static_cast<std::size_t>(u)] * v_at(n, 2 * dim + h * d + j, u);
            y.data[static_cast<std::size_t>((n * dim + h * d + j) * tokens + t)] = static_cast<float>(acc / z);
          }
        }
    return y;
  }

 private:
  static void require(bool ok, const char* what) {
    if (!ok) throw Error(errc::invalid_argument, std::string("reference backend: ") + what);
  }
  static double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }
  static float apply(double v, Activation act) {
    switch (act) {
      case Activation::relu: return static_cast<float>(v > 0 ? v : 0);
      case Activation::sigmoid: return static_cast<float>(sigmoid(v));
      case Activation::none: break;
    }
    return static_cast<float>(v);
  }
  // Mean and biased variance of plane (n, c), two-pass in double.
  static std::pair<double, double> moments(const tensor_type& x, std::int64_t n, std::int64_t c) {
    const std::int64_t hw = x.shape.plane();
    const float* p = x.data.data() + (n * x.shape.c + c) * hw;
    double sum = 0;
    for (std::int64_t i = 0; i < hw; ++i) sum += p[i];
    const double mean = sum / static_cast<double>(hw);
    double sq = 0;
    for (std::int64_t i = 0; i < hw; ++i) sq += (p[i] - mean) * (p[i] - mean);
    return {mean, sq / static_cast<double>(hw)};
  }
};

static_assert(Backend<ReferenceBackend>);

}  // namespace sluice::test
