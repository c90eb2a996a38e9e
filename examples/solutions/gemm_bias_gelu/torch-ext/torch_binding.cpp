#include <torch/library.h>

#include "registration.h"
#include "torch_binding.h"

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("gemm_bias_gelu(Tensor x, Tensor weight, Tensor bias) -> Tensor");
  ops.impl("gemm_bias_gelu", c10::kCUDA, &gemm_bias_gelu);
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
