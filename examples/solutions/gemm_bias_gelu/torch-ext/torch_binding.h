#pragma once

#include <ATen/core/Tensor.h>

at::Tensor gemm_bias_gelu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);
