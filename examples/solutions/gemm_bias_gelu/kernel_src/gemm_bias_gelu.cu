// nn.Linear + GELU for bf16 on Hopper: the GEMM goes to cuBLAS through at::matmul (the task
// allows it), and the epilogue (bias, exact GELU) is one kernel over the GEMM's output, in
// place: one block per row, 16-byte vectorized loads and stores, float arithmetic.
#include <ATen/core/Tensor.h>
#include <ATen/ops/matmul.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>

#include <cstdint>

namespace {

constexpr int kThreads = 256;
constexpr int kVec = 8;  // bf16 values per 16-byte load

__device__ __forceinline__ float gelu(float y) {
  return 0.5f * y * (1.f + erff(y * 0.70710678118654752f));
}

__global__ void __launch_bounds__(kThreads)
    bias_gelu_kernel(__nv_bfloat16* __restrict__ out, const __nv_bfloat16* __restrict__ bias,
                     int columns) {
  uint4* out_row = reinterpret_cast<uint4*>(out + static_cast<int64_t>(blockIdx.x) * columns);
  const uint4* b_vec = reinterpret_cast<const uint4*>(bias);
  const int vectors = columns / kVec;
  for (int i = threadIdx.x; i < vectors; i += kThreads) {
    uint4 packed = out_row[i];
    const uint4 packed_b = __ldg(b_vec + i);
    __nv_bfloat162* pairs = reinterpret_cast<__nv_bfloat162*>(&packed);
    const __nv_bfloat162* b_pairs = reinterpret_cast<const __nv_bfloat162*>(&packed_b);
#pragma unroll
    for (int j = 0; j < kVec / 2; ++j) {
      const float2 v = __bfloat1622float2(pairs[j]);
      const float2 b = __bfloat1622float2(b_pairs[j]);
      pairs[j] = __floats2bfloat162_rn(gelu(v.x + b.x), gelu(v.y + b.y));
    }
    out_row[i] = packed;
  }
}

bool aligned16(const void* pointer) {
  return reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0;
}

}  // namespace

at::Tensor gemm_bias_gelu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  TORCH_CHECK(x.is_cuda() && weight.is_cuda() && bias.is_cuda(),
              "gemm_bias_gelu expects CUDA tensors");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && weight.scalar_type() == at::kBFloat16 &&
                  bias.scalar_type() == at::kBFloat16,
              "gemm_bias_gelu expects bf16 tensors");
  TORCH_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1),
              "gemm_bias_gelu expects x (tokens, in) and weight (out, in)");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0),
              "gemm_bias_gelu expects bias of shape (out,)");
  TORCH_CHECK(weight.size(0) % kVec == 0, "gemm_bias_gelu expects out to be a multiple of 8");
  const c10::cuda::CUDAGuard guard(x.device());
  // cuBLAS on the current stream; its fresh, contiguous output is the epilogue's buffer.
  at::Tensor output = at::matmul(x, weight.t()).contiguous();
  const at::Tensor b = bias.contiguous();
  if (output.size(0) == 0) return output;
  TORCH_CHECK(aligned16(output.const_data_ptr()) && aligned16(b.const_data_ptr()),
              "gemm_bias_gelu expects 16-byte aligned tensors");
  bias_gelu_kernel<<<static_cast<unsigned>(output.size(0)), kThreads, 0,
                     c10::cuda::getCurrentCUDAStream()>>>(
      reinterpret_cast<__nv_bfloat16*>(output.mutable_data_ptr()),
      reinterpret_cast<const __nv_bfloat16*>(b.const_data_ptr()),
      static_cast<int>(output.size(1)));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return output;
}
