#pragma once

#include <ATen/core/Tensor.h>

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
