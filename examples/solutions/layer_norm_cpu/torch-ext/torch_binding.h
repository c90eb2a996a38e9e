#pragma once

#include <ATen/core/Tensor.h>

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps);
