// CUDA kernels of the sorted segment sum of the memory-lean splat; see
// splat_segment_sum.cpp for the shapes and the CPU version.
//
// forward:      one thread per (voxel segment, channel); a warp reads C consecutive context
//               floats of the same point, and a segment is summed in plan order (the result
//               does not depend on scheduling).
// grad_depth:   one warp per kept point, a shuffle reduction over the channels.
// grad_context: one thread per (point, channel), atomicAdd into the context row (the
//               points of one row are spread over the voxel-sorted plan); the order of the
//               additions, and so the last bits, vary between runs.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <tuple>

namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;

int64_t blocks_for(int64_t threads) { return (threads + kThreads - 1) / kThreads; }

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ depth,
                               const scalar_t* __restrict__ context,
                               const int64_t* __restrict__ point_index,
                               const int64_t* __restrict__ voxel_index,
                               const int64_t* __restrict__ context_index,
                               const int64_t* __restrict__ segment_start, int64_t segments,
                               int64_t kept, int64_t channels, scalar_t* __restrict__ volume) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= segments * channels) return;
  const int64_t segment = i / channels;
  const int64_t c = i - segment * channels;
  const int64_t begin = segment_start[segment];
  const int64_t end = segment + 1 < segments ? segment_start[segment + 1] : kept;
  scalar_t sum = 0;
  for (int64_t p = begin; p < end; ++p) {
    sum += depth[point_index[p]] * context[context_index[p] * channels + c];
  }
  volume[voxel_index[begin] * channels + c] = sum;
}

template <typename scalar_t>
__global__ void grad_depth_kernel(const scalar_t* __restrict__ grad_volume,
                                  const scalar_t* __restrict__ context,
                                  const int64_t* __restrict__ point_index,
                                  const int64_t* __restrict__ voxel_index,
                                  const int64_t* __restrict__ context_index, int64_t kept,
                                  int64_t channels, scalar_t* __restrict__ grad_depth) {
  // blockDim.x is a multiple of the warp size, so a warp leaves (or stays) as a whole and
  // the full-mask shuffle below is safe.
  const int64_t p = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (p >= kept) return;
  const scalar_t* grad_row = grad_volume + voxel_index[p] * channels;
  const scalar_t* row = context + context_index[p] * channels;
  scalar_t sum = 0;
  for (int64_t c = lane; c < channels; c += kWarp) sum += grad_row[c] * row[c];
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    sum += __shfl_down_sync(0xffffffffu, sum, offset);
  }
  if (lane == 0) grad_depth[point_index[p]] = sum;
}

template <typename scalar_t>
__global__ void grad_context_kernel(const scalar_t* __restrict__ grad_volume,
                                    const scalar_t* __restrict__ depth,
                                    const int64_t* __restrict__ point_index,
                                    const int64_t* __restrict__ voxel_index,
                                    const int64_t* __restrict__ context_index, int64_t kept,
                                    int64_t channels, scalar_t* __restrict__ grad_context) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= kept * channels) return;
  const int64_t p = i / channels;
  const int64_t c = i - p * channels;
  atomicAdd(grad_context + context_index[p] * channels + c,
            depth[point_index[p]] * grad_volume[voxel_index[p] * channels + c]);
}

// One device-to-host copy for all checks: a bad plan raises instead of reading or writing
// outside the tensors.
void validate_plan(const at::Tensor& point_index, const at::Tensor& voxel_index,
                   const at::Tensor& context_index, int64_t points, int64_t rows,
                   int64_t num_voxels, bool check_sorted) {
  const int64_t kept = point_index.numel();
  if (kept == 0) return;
  auto falls = check_sorted && kept > 1
                   ? (voxel_index.slice(0, 1) < voxel_index.slice(0, 0, kept - 1)).any()
                   : at::zeros({}, voxel_index.options().dtype(at::kBool));
  auto outside = ((point_index < 0) | (point_index >= points) | (voxel_index < 0) |
                  (voxel_index >= num_voxels) | (context_index < 0) | (context_index >= rows))
                     .any();
  auto flags = at::stack({falls, outside}).cpu();
  TORCH_CHECK(!flags[0].item<bool>(),
              "splat segment sum: voxel_index must be sorted (non-decreasing, as plan_splat "
              "makes it)");
  TORCH_CHECK(!flags[1].item<bool>(),
              "splat segment sum: point_index, voxel_index or context_index out of range");
}

}  // namespace

at::Tensor splat_forward_cuda(const at::Tensor& depth, const at::Tensor& context,
                                 const at::Tensor& point_index,
                                 const at::Tensor& voxel_index,
                                 const at::Tensor& context_index, int64_t num_voxels) {
  const c10::cuda::CUDAGuard guard(depth.device());
  const int64_t kept = point_index.numel();
  const int64_t channels = context.size(1);
  validate_plan(point_index, voxel_index, context_index, depth.numel(), context.size(0),
                num_voxels, true);
  auto volume = at::zeros({num_voxels, channels}, context.options());
  if (kept == 0 || channels == 0) return volume;
  auto starts = at::ones({kept}, voxel_index.options().dtype(at::kBool));
  if (kept > 1) {
    starts.slice(0, 1).copy_(voxel_index.slice(0, 1) != voxel_index.slice(0, 0, kept - 1));
  }
  const auto segment_start = at::nonzero(starts).view(-1).contiguous();
  const int64_t segments = segment_start.numel();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(depth.scalar_type(), "splat_forward_cuda", [&] {
    forward_kernel<scalar_t><<<blocks_for(segments * channels), kThreads, 0, stream>>>(
        depth.data_ptr<scalar_t>(), context.data_ptr<scalar_t>(),
        point_index.data_ptr<int64_t>(), voxel_index.data_ptr<int64_t>(),
        context_index.data_ptr<int64_t>(), segment_start.data_ptr<int64_t>(), segments, kept,
        channels, volume.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return volume;
}

std::tuple<at::Tensor, at::Tensor> splat_backward_cuda(const at::Tensor& grad_volume,
                                               const at::Tensor& depth,
                                               const at::Tensor& context,
                                               const at::Tensor& point_index,
                                               const at::Tensor& voxel_index,
                                               const at::Tensor& context_index,
                                               bool need_depth, bool need_context) {
  const c10::cuda::CUDAGuard guard(depth.device());
  const int64_t kept = point_index.numel();
  const int64_t channels = context.size(1);
  // The backward pass does not rely on the order, only on the indices staying in range.
  validate_plan(point_index, voxel_index, context_index, depth.numel(), context.size(0),
                grad_volume.size(0), false);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor grad_depth = at::empty({0}, depth.options());
  at::Tensor grad_context = at::empty({0}, context.options());
  AT_DISPATCH_FLOATING_TYPES(depth.scalar_type(), "splat_backward_cuda", [&] {
    if (need_depth) {
      grad_depth = at::zeros_like(depth);
      if (kept > 0) {
        grad_depth_kernel<scalar_t><<<blocks_for(kept * kWarp), kThreads, 0, stream>>>(
            grad_volume.data_ptr<scalar_t>(), context.data_ptr<scalar_t>(),
            point_index.data_ptr<int64_t>(), voxel_index.data_ptr<int64_t>(),
            context_index.data_ptr<int64_t>(), kept, channels,
            grad_depth.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
    if (need_context) {
      grad_context = at::zeros_like(context);
      if (kept > 0 && channels > 0) {
        grad_context_kernel<scalar_t><<<blocks_for(kept * channels), kThreads, 0, stream>>>(
            grad_volume.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(),
            point_index.data_ptr<int64_t>(), voxel_index.data_ptr<int64_t>(),
            context_index.data_ptr<int64_t>(), kept, channels,
            grad_context.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
  });
  return {grad_depth, grad_context};
}
