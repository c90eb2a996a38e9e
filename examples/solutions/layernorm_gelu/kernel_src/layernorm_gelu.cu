// LayerNorm followed by the exact (erf) GELU, fused, for bf16 on Hopper: the normalized value
// goes through GELU in registers, so the output is rounded to bf16 once. One block per row, 16-byte vectorized loads and stores, float
// accumulation, and two passes over the row (the mean, then the centred variance) so large
// means do not cost precision; the row's second and third reads hit L1/L2.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>

#include <cstdint>

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kVec = 8;  // bf16 values per 16-byte load

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

// Sum over the block, returned to every thread. The barrier at the end lets the next call
// reuse `partial`.
__device__ __forceinline__ float block_sum(float value, float* partial) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  value = warp_sum(value);
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  value = warp_sum(lane < kWarps ? partial[lane] : 0.f);
  __syncthreads();
  return value;
}

__device__ __forceinline__ void unpack(const uint4& packed, float (&v)[kVec]) {
  const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&packed);
#pragma unroll
  for (int j = 0; j < kVec / 2; ++j) {
    const float2 f = __bfloat1622float2(pairs[j]);
    v[2 * j] = f.x;
    v[2 * j + 1] = f.y;
  }
}

__device__ __forceinline__ float gelu(float y) {
  return 0.5f * y * (1.f + erff(y * 0.70710678118654752f));
}

__global__ void __launch_bounds__(kThreads)
    layernorm_gelu_kernel(__nv_bfloat16* __restrict__ out, const __nv_bfloat16* __restrict__ x,
                      const __nv_bfloat16* __restrict__ weight,
                      const __nv_bfloat16* __restrict__ bias, int hidden, float eps) {
  __shared__ float partial[kWarps];
  const int64_t row = blockIdx.x;
  const uint4* x_row = reinterpret_cast<const uint4*>(x + row * hidden);
  const uint4* w_vec = reinterpret_cast<const uint4*>(weight);
  const uint4* b_vec = reinterpret_cast<const uint4*>(bias);
  uint4* out_row = reinterpret_cast<uint4*>(out + row * hidden);
  const int vectors = hidden / kVec;
  float v[kVec];

  float sum = 0.f;
  for (int i = threadIdx.x; i < vectors; i += kThreads) {
    unpack(x_row[i], v);
#pragma unroll
    for (int j = 0; j < kVec; ++j) sum += v[j];
  }
  const float mean = block_sum(sum, partial) / hidden;

  float squares = 0.f;
  for (int i = threadIdx.x; i < vectors; i += kThreads) {
    unpack(x_row[i], v);
#pragma unroll
    for (int j = 0; j < kVec; ++j) squares += (v[j] - mean) * (v[j] - mean);
  }
  const float rstd = rsqrtf(block_sum(squares, partial) / hidden + eps);

  for (int i = threadIdx.x; i < vectors; i += kThreads) {
    float w[kVec], b[kVec];
    unpack(x_row[i], v);
    unpack(__ldg(w_vec + i), w);
    unpack(__ldg(b_vec + i), b);
    uint4 result;
    __nv_bfloat162* out_pairs = reinterpret_cast<__nv_bfloat162*>(&result);
#pragma unroll
    for (int j = 0; j < kVec / 2; ++j) {
      out_pairs[j] =
          __floats2bfloat162_rn(gelu((v[2 * j] - mean) * rstd * w[2 * j] + b[2 * j]),
                                gelu((v[2 * j + 1] - mean) * rstd * w[2 * j + 1] + b[2 * j + 1]));
    }
    out_row[i] = result;
  }
}

bool aligned16(const void* pointer) {
  return reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0;
}

}  // namespace

at::Tensor layernorm_gelu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps) {
  TORCH_CHECK(x.is_cuda() && weight.is_cuda() && bias.is_cuda(),
              "layernorm_gelu expects CUDA tensors");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && weight.scalar_type() == at::kBFloat16 &&
                  bias.scalar_type() == at::kBFloat16,
              "layernorm_gelu expects bf16 tensors");
  TORCH_CHECK(x.dim() == 2, "layernorm_gelu expects x of shape (tokens, hidden)");
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == x.size(1) && bias.dim() == 1 &&
                  bias.size(0) == x.size(1),
              "layernorm_gelu expects weight and bias of shape (hidden,)");
  TORCH_CHECK(x.size(1) % kVec == 0, "layernorm_gelu expects hidden to be a multiple of 8");
  const at::Tensor input = x.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = bias.contiguous();
  at::Tensor output = at::empty_like(input);
  if (input.size(0) == 0) return output;
  TORCH_CHECK(aligned16(input.const_data_ptr()) && aligned16(w.const_data_ptr()) &&
                  aligned16(b.const_data_ptr()),
              "layernorm_gelu expects 16-byte aligned tensors");

  const c10::cuda::CUDAGuard guard(input.device());
  layernorm_gelu_kernel<<<static_cast<unsigned>(input.size(0)), kThreads, 0,
                      c10::cuda::getCurrentCUDAStream()>>>(
      reinterpret_cast<__nv_bfloat16*>(output.mutable_data_ptr()),
      reinterpret_cast<const __nv_bfloat16*>(input.const_data_ptr()),
      reinterpret_cast<const __nv_bfloat16*>(w.const_data_ptr()),
      reinterpret_cast<const __nv_bfloat16*>(b.const_data_ptr()), static_cast<int>(input.size(1)),
      static_cast<float>(eps));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return output;
}
