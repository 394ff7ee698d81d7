// examples/minimal_backend/minimal_backend.hpp: the smallest complete sluice backend -- float
// tensors in plain NCHW vectors and one obvious loop nest per operation. It satisfies
// sluice::Backend, so every network in sluice/models runs on it unchanged. It is written to be read
// (docs/writing-a-backend.md walks through it), not to be fast. It is also the reference backend of
// tests/models: it shares no code with the CPU backend, every sum is accumulated in double, and its
// tensors are move-only, so a network that copies an activation by accident does not compile.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "sluice/core/backend.hpp"
#include "sluice/core/error.hpp"
#include "sluice/core/weight_view.hpp"

namespace minimal {

using sluice::Activation;
using sluice::ConvSpec;
using sluice::NormEpilogue;
using sluice::Shape;
using sluice::WeightView;

class MinimalBackend {
 public:
  // ---- the types a backend names ----

  /// An activation: its logical shape and its values, N x C x H x W in row-major order. Move-only.
  struct tensor_type {
    Shape shape;
    std::vector<float> v;

    tensor_type() = default;
    tensor_type(const Shape& s, std::vector<float> values) : shape(s), v(std::move(values)) {}
    tensor_type(tensor_type&&) = default;
    tensor_type& operator=(tensor_type&&) = default;
    tensor_type(const tensor_type&) = delete;
    tensor_type& operator=(const tensor_type&) = delete;

    float& at(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
      return v[static_cast<std::size_t>(((n * shape.c + c) * shape.h + h) * shape.w + w)];
    }
    float at(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) const {
      return v[static_cast<std::size_t>(((n * shape.c + c) * shape.h + h) * shape.w + w)];
    }
  };

  /// Bound weights: copies of the checkpoint's values (the views passed to make_* do not outlive the call).
  struct conv_type {
    std::vector<float> w, bias;  // bias empty: none
    std::int64_t out = 0, in_per_group = 0, kh = 0, kw = 0;
    ConvSpec spec;
  };
  struct conv_transpose_type {
    std::vector<float> w, bias;
    std::int64_t in = 0, out = 0;
  };
  struct norm_type {
    std::vector<float> gamma, beta;
  };
  struct linear_type {
    std::vector<float> w, bias;
    std::int64_t out = 0, in = 0;
  };

  // ---- BackendBase: tensors in and out, synchronisation, memory ----

  tensor_type upload(std::span<const float> src, const Shape& shape) {
    check(static_cast<std::int64_t>(src.size()) == shape.numel(), "upload: the values do not fill the shape");
    return {shape, std::vector<float>(src.begin(), src.end())};
  }
  void download(const tensor_type& t, std::span<float> dst) {
    check(dst.size() == t.v.size(), "download: the destination has the wrong size");
    std::copy(t.v.begin(), t.v.end(), dst.begin());
  }
  Shape shape_of(const tensor_type& t) const { return t.shape; }
  void synchronize() {}  // every operation has finished when it returns
  /// No accounting: zeros. A backend meant for the calibrator must report its real bytes here.
  sluice::MemoryStats memory() const { return {}; }
  void reset_peak() {}

  // ---- BackendWeights: bind once, keep what the operations need ----

  conv_type make_conv(const WeightView& w, const WeightView* bias, const ConvSpec& spec) {
    check(w.shape.size() == 4, "make_conv: the weight must be (out, in/groups, kh, kw)");
    return {copy(w), bias ? copy(*bias) : std::vector<float>{}, w.shape[0], w.shape[1], w.shape[2], w.shape[3], spec};
  }
  conv_transpose_type make_conv_transpose2x2(const WeightView& w, const WeightView* bias) {
    check(w.shape.size() == 4 && w.shape[2] == 2 && w.shape[3] == 2, "make_conv_transpose2x2: weight (in, out, 2, 2)");
    return {copy(w), bias ? copy(*bias) : std::vector<float>{}, w.shape[0], w.shape[1]};
  }
  norm_type make_norm(const WeightView& gamma, const WeightView& beta) { return {copy(gamma), copy(beta)}; }
  linear_type make_linear(const WeightView& w, const WeightView* bias) {
    check(w.shape.size() == 2, "make_linear: the weight must be (out, in)");
    return {copy(w), bias ? copy(*bias) : std::vector<float>{}, w.shape[0], w.shape[1]};
  }

  // ---- BackendOps: every operation returns a new tensor ----

  tensor_type conv2d(const tensor_type& x, const conv_type& k, Activation act) {
    const Shape s = x.shape;
    const ConvSpec& p = k.spec;
    check(s.c == k.in_per_group * p.groups, "conv2d: input channels do not match the weight");
    const std::int64_t oh = (s.h + 2 * p.pad_h - p.dilation_h * (k.kh - 1) - 1) / p.stride_h + 1;
    const std::int64_t ow = (s.w + 2 * p.pad_w - p.dilation_w * (k.kw - 1) - 1) / p.stride_w + 1;
    tensor_type y = make({s.n, k.out, oh, ow});
    const std::int64_t out_per_group = k.out / p.groups;
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t o = 0; o < k.out; ++o)
        for (std::int64_t i = 0; i < oh; ++i)
          for (std::int64_t j = 0; j < ow; ++j) {
            double acc = k.bias.empty() ? 0.0 : k.bias[o];
            const std::int64_t c0 = (o / out_per_group) * k.in_per_group;
            for (std::int64_t c = 0; c < k.in_per_group; ++c)
              for (std::int64_t a = 0; a < k.kh; ++a)
                for (std::int64_t b = 0; b < k.kw; ++b) {
                  const std::int64_t yy = i * p.stride_h - p.pad_h + a * p.dilation_h;
                  const std::int64_t xx = j * p.stride_w - p.pad_w + b * p.dilation_w;
                  if (yy < 0 || yy >= s.h || xx < 0 || xx >= s.w) continue;  // zero padding
                  acc += double(k.w[((o * k.in_per_group + c) * k.kh + a) * k.kw + b]) * x.at(n, c0 + c, yy, xx);
                }
            y.at(n, o, i, j) = apply(acc, act);
          }
    return y;
  }

  tensor_type conv_transpose2x2(const tensor_type& x, const conv_transpose_type& k) {
    const Shape s = x.shape;
    check(s.c == k.in, "conv_transpose2x2: input channels do not match the weight");
    tensor_type y = make({s.n, k.out, 2 * s.h, 2 * s.w});
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t o = 0; o < k.out; ++o)
        for (std::int64_t i = 0; i < 2 * s.h; ++i)
          for (std::int64_t j = 0; j < 2 * s.w; ++j) {
            double acc = k.bias.empty() ? 0.0 : k.bias[o];
            for (std::int64_t c = 0; c < k.in; ++c)
              acc += double(k.w[((c * k.out + o) * 2 + i % 2) * 2 + j % 2]) * x.at(n, c, i / 2, j / 2);
            y.at(n, o, i, j) = float(acc);
          }
    return y;
  }

  /// act(gamma * (x - mean) / sqrt(var + 1e-5) + beta + residual), per sample and channel.
  tensor_type instance_norm(const tensor_type& x, const norm_type& k, NormEpilogue epi) {
    const auto* residual = static_cast<const tensor_type*>(epi.residual);
    check(!residual || residual->shape == x.shape, "instance_norm: the residual has another shape");
    tensor_type y = make(x.shape);
    const std::int64_t plane = x.shape.plane();
    for (std::int64_t nc = 0; nc < x.shape.n * x.shape.c; ++nc) {
      const std::int64_t c = nc % x.shape.c;
      const auto [mean, var] = moments(&x.v[nc * plane], plane);
      const double scale = k.gamma[c] / std::sqrt(var + 1e-5);
      for (std::int64_t i = nc * plane; i < (nc + 1) * plane; ++i)
        y.v[i] = apply((x.v[i] - mean) * scale + k.beta[c] + (residual ? residual->v[i] : 0.0f), epi.activation);
    }
    return y;
  }

  tensor_type activation(const tensor_type& x, Activation act) {
    tensor_type y = make(x.shape);
    for (std::size_t i = 0; i < y.v.size(); ++i) y.v[i] = apply(x.v[i], act);
    return y;
  }

  tensor_type add(const tensor_type& a, const tensor_type& b, Activation act) {
    check(a.shape == b.shape, "add: shapes differ");
    tensor_type y = make(a.shape);
    for (std::size_t i = 0; i < y.v.size(); ++i) y.v[i] = apply(double(a.v[i]) + b.v[i], act);
    return y;
  }

  /// x * g, g broadcast along every dimension where it has size 1.
  tensor_type mul(const tensor_type& x, const tensor_type& g) {
    const Shape s = x.shape, t = g.shape;
    check(t.n == s.n && (t.c == s.c || t.c == 1) && (t.h == s.h || t.h == 1) && (t.w == s.w || t.w == 1),
          "mul: the gate does not broadcast to the input");
    tensor_type y = make(s);
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
    for (const tensor_type* p : parts) {
      check(p->shape.n == s.n && p->shape.h == s.h && p->shape.w == s.w, "concat: planes differ");
      s.c += p->shape.c;
    }
    tensor_type y = make(s);
    auto out = y.v.begin();
    for (std::int64_t n = 0; n < s.n; ++n)
      for (const tensor_type* p : parts) {  // sample n of every part, one after the other
        const std::int64_t block = p->shape.c * p->shape.plane();
        out = std::copy_n(p->v.begin() + n * block, block, out);
      }
    return y;
  }

  tensor_type max_pool2x2(const tensor_type& x) {
    const Shape s = x.shape;
    tensor_type y = make({s.n, s.c, s.h / 2, s.w / 2});  // floor: an odd last row or column is dropped
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t c = 0; c < s.c; ++c)
        for (std::int64_t i = 0; i < s.h / 2; ++i)
          for (std::int64_t j = 0; j < s.w / 2; ++j)
            y.at(n, c, i, j) = std::max({x.at(n, c, 2 * i, 2 * j), x.at(n, c, 2 * i, 2 * j + 1),
                                         x.at(n, c, 2 * i + 1, 2 * j), x.at(n, c, 2 * i + 1, 2 * j + 1)});
    return y;
  }

  /// PyTorch's F.interpolate(mode="bilinear", antialias=False) sampling.
  tensor_type resize_bilinear(const tensor_type& x, std::int64_t oh, std::int64_t ow, bool align_corners) {
    const Shape s = x.shape;
    auto source = [&](std::int64_t o, std::int64_t in, std::int64_t out) {
      if (align_corners) return out > 1 ? double(o) * double(in - 1) / double(out - 1) : 0.0;
      return std::max(0.0, (double(o) + 0.5) * double(in) / double(out) - 0.5);
    };
    tensor_type y = make({s.n, s.c, oh, ow});
    for (std::int64_t i = 0; i < oh; ++i) {
      const double sy = source(i, s.h, oh);
      const std::int64_t y0 = std::min<std::int64_t>(std::int64_t(sy), s.h - 1), y1 = std::min(y0 + 1, s.h - 1);
      const double fy = sy - double(y0);
      for (std::int64_t j = 0; j < ow; ++j) {
        const double sx = source(j, s.w, ow);
        const std::int64_t x0 = std::min<std::int64_t>(std::int64_t(sx), s.w - 1), x1 = std::min(x0 + 1, s.w - 1);
        const double fx = sx - double(x0);
        for (std::int64_t n = 0; n < s.n; ++n)
          for (std::int64_t c = 0; c < s.c; ++c)
            y.at(n, c, i, j) = float((1 - fy) * ((1 - fx) * x.at(n, c, y0, x0) + fx * x.at(n, c, y0, x1)) +
                                     fy * ((1 - fx) * x.at(n, c, y1, x0) + fx * x.at(n, c, y1, x1)));
      }
    }
    return y;
  }

  tensor_type global_avg_pool(const tensor_type& x) {
    return reduce(x, {x.shape.n, x.shape.c, 1, 1}, [](double sum, float, std::int64_t count) { return sum / count; });
  }
  tensor_type global_max_pool(const tensor_type& x) {
    return reduce(x, {x.shape.n, x.shape.c, 1, 1}, [](double, float max, std::int64_t) { return double(max); });
  }
  tensor_type mean_over_w(const tensor_type& x) {
    return reduce(x, {x.shape.n, x.shape.c, x.shape.h, 1}, [](double sum, float, std::int64_t count) { return sum / count; });
  }
  tensor_type mean_over_h(const tensor_type& x) {
    return reduce(x, {x.shape.n, x.shape.c, 1, x.shape.w}, [](double sum, float, std::int64_t count) { return sum / count; });
  }

  /// (N, 2, H, W): the mean and the maximum over the channels.
  tensor_type channel_mean_max(const tensor_type& x) {
    const Shape s = x.shape;
    tensor_type y = make({s.n, 2, s.h, s.w});
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t i = 0; i < s.h; ++i)
        for (std::int64_t j = 0; j < s.w; ++j) {
          double sum = 0;
          float max = -std::numeric_limits<float>::infinity();
          for (std::int64_t c = 0; c < s.c; ++c) {
            sum += x.at(n, c, i, j);
            max = std::max(max, x.at(n, c, i, j));
          }
          y.at(n, 0, i, j) = float(sum / double(s.c));
          y.at(n, 1, i, j) = max;
        }
    return y;
  }

  tensor_type linear(const tensor_type& x, const linear_type& k, Activation act) {
    check(x.shape.c == k.in && x.shape.h == 1 && x.shape.w == 1, "linear: the input must be (N, in, 1, 1)");
    tensor_type y = make({x.shape.n, k.out, 1, 1});
    for (std::int64_t n = 0; n < x.shape.n; ++n)
      for (std::int64_t o = 0; o < k.out; ++o) {
        double acc = k.bias.empty() ? 0.0 : k.bias[o];
        for (std::int64_t i = 0; i < k.in; ++i) acc += double(k.w[o * k.in + i]) * x.v[n * k.in + i];
        y.v[n * k.out + o] = apply(acc, act);
      }
    return y;
  }

  /// x * sigmoid(-(x - mean) / sqrt(var + eps)), per sample and channel.
  tensor_type simam(const tensor_type& x, float eps) {
    tensor_type y = make(x.shape);
    const std::int64_t plane = x.shape.plane();
    for (std::int64_t nc = 0; nc < x.shape.n * x.shape.c; ++nc) {
      const auto [mean, var] = moments(&x.v[nc * plane], plane);
      for (std::int64_t i = nc * plane; i < (nc + 1) * plane; ++i)
        y.v[i] = float(x.v[i] * sigmoid(-(x.v[i] - mean) / std::sqrt(var + eps)));
    }
    return y;
  }

  /// softmax(q k^T / sqrt(d)) v per head, q, k, v the three thirds of the channels; one query at a time.
  tensor_type self_attention(const tensor_type& qkv, std::int64_t heads) {
    const Shape s = qkv.shape;
    check(s.c % 3 == 0 && (s.c / 3) % heads == 0, "self_attention: channels must be 3 x heads x d");
    const std::int64_t dim = s.c / 3, d = dim / heads, tokens = s.plane();
    auto at = [&](std::int64_t n, std::int64_t c, std::int64_t t) { return double(qkv.v[(n * s.c + c) * tokens + t]); };
    tensor_type y = make({s.n, dim, s.h, s.w});
    std::vector<double> weight(static_cast<std::size_t>(tokens));
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t t = 0; t < tokens; ++t) {
          double top = -std::numeric_limits<double>::infinity(), total = 0;
          for (std::int64_t u = 0; u < tokens; ++u) {
            double dot = 0;
            for (std::int64_t j = 0; j < d; ++j) dot += at(n, h * d + j, t) * at(n, dim + h * d + j, u);
            weight[u] = dot / std::sqrt(double(d));
            top = std::max(top, weight[u]);
          }
          for (double& e : weight) total += (e = std::exp(e - top));
          for (std::int64_t j = 0; j < d; ++j) {
            double acc = 0;
            for (std::int64_t u = 0; u < tokens; ++u) acc += weight[u] * at(n, 2 * dim + h * d + j, u);
            y.v[(n * dim + h * d + j) * tokens + t] = float(acc / total);
          }
        }
    return y;
  }

 private:
  static void check(bool ok, const char* what) {
    if (!ok) throw sluice::Error(sluice::errc::invalid_argument, std::string("minimal backend: ") + what);
  }
  static tensor_type make(const Shape& s) { return {s, std::vector<float>(static_cast<std::size_t>(s.numel()))}; }
  static std::vector<float> copy(const WeightView& w) { return {w.data.begin(), w.data.end()}; }

  static double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }
  static float apply(double v, Activation act) {
    switch (act) {
      case Activation::relu: return v > 0 ? float(v) : 0.0f;
      case Activation::sigmoid: return float(sigmoid(v));
      case Activation::none: break;
    }
    return float(v);
  }

  /// Mean and biased variance of `count` values.
  static std::pair<double, double> moments(const float* p, std::int64_t count) {
    double sum = 0, squares = 0;
    for (std::int64_t i = 0; i < count; ++i) sum += p[i];
    const double mean = sum / double(count);
    for (std::int64_t i = 0; i < count; ++i) squares += (p[i] - mean) * (p[i] - mean);
    return {mean, squares / double(count)};
  }

  /// Reduces x onto `to` (each dimension of `to` is x's or 1): finish(sum, max, count) per output value.
  template <class Finish>
  static tensor_type reduce(const tensor_type& x, const Shape& to, Finish finish) {
    const Shape s = x.shape;
    std::vector<double> sum(static_cast<std::size_t>(to.numel()), 0.0);
    std::vector<float> max(sum.size(), -std::numeric_limits<float>::infinity());
    for (std::int64_t n = 0; n < s.n; ++n)
      for (std::int64_t c = 0; c < s.c; ++c)
        for (std::int64_t i = 0; i < s.h; ++i)
          for (std::int64_t j = 0; j < s.w; ++j) {
            const std::size_t o = static_cast<std::size_t>(((n * to.c + c) * to.h + (to.h == 1 ? 0 : i)) * to.w +
                                                            (to.w == 1 ? 0 : j));
            sum[o] += x.at(n, c, i, j);
            max[o] = std::max(max[o], x.at(n, c, i, j));
          }
    const std::int64_t count = s.numel() / to.numel();
    tensor_type y = make(to);
    for (std::size_t o = 0; o < sum.size(); ++o) y.v[o] = float(finish(sum[o], max[o], count));
    return y;
  }
};

static_assert(sluice::Backend<MinimalBackend>);

}  // namespace minimal
