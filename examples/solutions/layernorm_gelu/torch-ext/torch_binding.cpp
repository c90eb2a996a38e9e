#include <torch/library.h>

#include "registration.h"
#include "torch_binding.h"

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("layernorm_gelu(Tensor x, Tensor weight, Tensor bias, float eps) -> Tensor");
  ops.impl("layernorm_gelu", c10::kCUDA, &layernorm_gelu);
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
