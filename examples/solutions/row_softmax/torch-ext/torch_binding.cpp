#include <torch/library.h>

#include "registration.h"
#include "torch_binding.h"

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("row_softmax(Tensor x) -> Tensor");
  ops.impl("row_softmax", c10::kCPU, &row_softmax);
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
