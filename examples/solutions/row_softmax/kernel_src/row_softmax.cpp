#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>

// Softmax of each row, with the row maximum subtracted first so large inputs do not overflow.
at::Tensor row_softmax(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2, "row_softmax expects a 2-D tensor, got ", x.dim(), " dimensions");
  TORCH_CHECK(x.scalar_type() == at::kFloat, "row_softmax expects float32");
  TORCH_CHECK(x.device().is_cpu(), "row_softmax expects a CPU tensor");
  const at::Tensor input = x.contiguous();
  at::Tensor output = at::empty_like(input);
  const int64_t rows = input.size(0);
  const int64_t cols = input.size(1);
  const float* in = input.const_data_ptr<float>();
  float* out = output.mutable_data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = in + r * cols;
    float* dst = out + r * cols;
    float max = -std::numeric_limits<float>::infinity();
    for (int64_t c = 0; c < cols; ++c) max = std::max(max, row[c]);
    float sum = 0.f;
    for (int64_t c = 0; c < cols; ++c) {
      dst[c] = std::exp(row[c] - max);
      sum += dst[c];
    }
    const float scale = 1.f / sum;
    for (int64_t c = 0; c < cols; ++c) dst[c] *= scale;
  }
  return output;
}
