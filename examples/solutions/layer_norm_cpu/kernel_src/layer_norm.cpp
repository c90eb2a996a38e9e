#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>

#include <cmath>

// LayerNorm of each row of a float32 (tokens, hidden) tensor: the mean, then the centred
// variance (two passes, accumulated in double, so large means cost no precision).
at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps) {
  TORCH_CHECK(x.dim() == 2, "layer_norm expects x of shape (tokens, hidden)");
  TORCH_CHECK(x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
                  bias.scalar_type() == at::kFloat,
              "layer_norm expects float32 tensors");
  TORCH_CHECK(x.device().is_cpu(), "layer_norm expects CPU tensors");
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == x.size(1) && bias.dim() == 1 &&
                  bias.size(0) == x.size(1),
              "layer_norm expects weight and bias of shape (hidden,)");
  const at::Tensor input = x.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = bias.contiguous();
  at::Tensor output = at::empty_like(input);
  const int64_t rows = input.size(0);
  const int64_t cols = input.size(1);
  const float* in = input.const_data_ptr<float>();
  const float* gamma = w.const_data_ptr<float>();
  const float* beta = b.const_data_ptr<float>();
  float* out = output.mutable_data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = in + r * cols;
    float* dst = out + r * cols;
    double sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) sum += row[c];
    const double mean = sum / cols;
    double squares = 0.0;
    for (int64_t c = 0; c < cols; ++c) squares += (row[c] - mean) * (row[c] - mean);
    const double rstd = 1.0 / std::sqrt(squares / cols + eps);
    for (int64_t c = 0; c < cols; ++c) {
      dst[c] = static_cast<float>((row[c] - mean) * rstd * gamma[c] + beta[c]);
    }
  }
  return output;
}
