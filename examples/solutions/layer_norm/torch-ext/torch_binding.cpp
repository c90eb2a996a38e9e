#include <torch/library.h>

#include "registration.h"
#include "torch_binding.h"

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("layer_norm(Tensor x, Tensor weight, Tensor bias, float eps) -> Tensor");
  ops.impl("layer_norm", c10::kCUDA, &layer_norm);
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
