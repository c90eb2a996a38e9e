#pragma once

#include <ATen/core/Tensor.h>

at::Tensor layernorm_gelu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps);
