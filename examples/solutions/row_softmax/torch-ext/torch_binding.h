#pragma once

#include <ATen/core/Tensor.h>

at::Tensor row_softmax(const at::Tensor& x);
