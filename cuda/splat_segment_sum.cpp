// Sorted segment sum of the memory-lean splat (renderlss.ops.splat._DepthContextSplat).
//
// Shapes (M kept frustum points, P frustum points, R context rows, V voxels, C channels):
//   depth [P], context [R, C], point_index / voxel_index / context_index [M] int64, with
//   voxel_index non-decreasing (plan_splat sorts the points by voxel).
//   forward:  volume[V, C],  volume[v] = sum over p with voxel_index[p] == v of
//             depth[point_index[p]] * context[context_index[p]]
//   backward: grad_depth[P], grad_context[R, C] from grad_volume [V, C].
//
// CPU: at::parallel_for over runs of points; a voxel's run is summed by one thread in plan
// order, so the forward pass adds in the same order as the torch reference (index_add_).
// CUDA (splat_segment_sum_cuda.cu, compiled when RENDERLSS_WITH_CUDA is defined): one thread
// per (voxel segment, channel) in the forward pass, atomics for grad_context.

// Only the ATen headers used, and TORCH_LIBRARY instead of pybind11: the build takes a
// fraction of the time of <torch/extension.h>.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <tuple>

#ifdef RENDERLSS_WITH_CUDA
at::Tensor splat_forward_cuda(const at::Tensor& depth, const at::Tensor& context,
                                 const at::Tensor& point_index,
                                 const at::Tensor& voxel_index,
                                 const at::Tensor& context_index, int64_t num_voxels);
std::tuple<at::Tensor, at::Tensor> splat_backward_cuda(const at::Tensor& grad_volume,
                                               const at::Tensor& depth,
                                               const at::Tensor& context,
                                               const at::Tensor& point_index,
                                               const at::Tensor& voxel_index,
                                               const at::Tensor& context_index,
                                               bool need_depth, bool need_context);
#endif

namespace {

// Points per parallel task: a task's run of points fits in L2 with its context rows.
constexpr int64_t kGrain = 4096;

void check_inputs(const at::Tensor& depth, const at::Tensor& context,
                  const at::Tensor& point_index, const at::Tensor& voxel_index,
                  const at::Tensor& context_index) {
  TORCH_CHECK(depth.dim() == 1, "splat segment sum: depth must be [P], got ", depth.sizes());
  TORCH_CHECK(context.dim() == 2, "splat segment sum: context must be [R, C], got ",
              context.sizes());
  TORCH_CHECK(context.scalar_type() == depth.scalar_type(),
              "splat segment sum: depth and context must share a dtype, got ",
              depth.scalar_type(), " and ", context.scalar_type());
  TORCH_CHECK(depth.is_contiguous() && context.is_contiguous(),
              "splat segment sum: depth and context must be contiguous");
  const int64_t kept = point_index.numel();
  for (const auto* index : {&point_index, &voxel_index, &context_index}) {
    TORCH_CHECK(index->scalar_type() == at::kLong && index->dim() == 1 &&
                    index->numel() == kept && index->is_contiguous(),
                "splat segment sum: point_index, voxel_index and context_index must be "
                "contiguous int64 [M] of one length");
    TORCH_CHECK(index->device() == depth.device() && context.device() == depth.device(),
                "splat segment sum: all tensors must be on one device");
  }
}

// Where voxel_index decreases or an index leaves its tensor: -1 if nowhere. Checked before
// any write, so a bad plan raises instead of corrupting memory.
int64_t first_bad_point(const int64_t* point_index, const int64_t* voxel_index,
                        const int64_t* context_index, int64_t kept, int64_t points,
                        int64_t rows, int64_t num_voxels) {
  std::atomic<int64_t> bad{kept};
  at::parallel_for(0, kept, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const bool ok = point_index[p] >= 0 && point_index[p] < points && voxel_index[p] >= 0 &&
                      voxel_index[p] < num_voxels && context_index[p] >= 0 &&
                      context_index[p] < rows && (p == 0 || voxel_index[p] >= voxel_index[p - 1]);
      if (!ok) {
        int64_t seen = bad.load();
        while (p < seen && !bad.compare_exchange_weak(seen, p)) {
        }
        return;
      }
    }
  });
  return bad.load() == kept ? -1 : bad.load();
}

void raise_bad_point(int64_t p, const at::Tensor& point_index,
                     const at::Tensor& voxel_index, const at::Tensor& context_index) {
  const int64_t* voxel = voxel_index.data_ptr<int64_t>();
  TORCH_CHECK(p == 0 || voxel[p] >= voxel[p - 1],
              "splat segment sum: voxel_index must be sorted (non-decreasing, as plan_splat "
              "makes it); it falls from ",
              voxel[p - 1], " to ", voxel[p], " at point ", p);
  TORCH_CHECK(false, "splat segment sum: index out of range at point ", p,
              " (point_index ", point_index.data_ptr<int64_t>()[p], ", voxel_index ", voxel[p],
              ", context_index ", context_index.data_ptr<int64_t>()[p], ")");
}

// A task owns the voxel segments that start in its range [begin, end): it skips the tail of
// a segment begun before it and finishes the segment still open at its end.
template <typename scalar_t>
void forward_cpu_kernel(const scalar_t* depth, const scalar_t* context,
                        const int64_t* point_index, const int64_t* voxel_index,
                        const int64_t* context_index, int64_t kept, int64_t channels,
                        scalar_t* volume) {
  at::parallel_for(0, kept, kGrain, [&](int64_t begin, int64_t end) {
    while (begin < end && begin > 0 && voxel_index[begin] == voxel_index[begin - 1]) ++begin;
    if (begin >= end) return;
    while (end < kept && voxel_index[end] == voxel_index[end - 1]) ++end;
    for (int64_t p = begin; p < end; ++p) {
      const scalar_t weight = depth[point_index[p]];
      const scalar_t* row = context + context_index[p] * channels;
      scalar_t* out = volume + voxel_index[p] * channels;
      for (int64_t c = 0; c < channels; ++c) out[c] += weight * row[c];
    }
  });
}

template <typename scalar_t>
void grad_depth_cpu_kernel(const scalar_t* grad_volume, const scalar_t* context,
                           const int64_t* point_index, const int64_t* voxel_index,
                           const int64_t* context_index, int64_t kept, int64_t channels,
                           scalar_t* grad_depth) {
  // Each frustum point appears once in the plan: no two tasks write one entry.
  at::parallel_for(0, kept, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const scalar_t* grad_row = grad_volume + voxel_index[p] * channels;
      const scalar_t* row = context + context_index[p] * channels;
      scalar_t sum = 0;
      for (int64_t c = 0; c < channels; ++c) sum += grad_row[c] * row[c];
      grad_depth[point_index[p]] = sum;
    }
  });
}

// Points of one context row are spread over the plan (sorted by voxel, not by row): every
// task accumulates into a private copy of grad_context and the copies are summed. The split
// depends only on the thread count, so a run is reproducible on one machine.
template <typename scalar_t>
at::Tensor grad_context_cpu(const at::Tensor& grad_volume, const at::Tensor& depth,
                               const at::Tensor& context, const int64_t* point_index,
                               const int64_t* voxel_index, const int64_t* context_index,
                               int64_t kept) {
  const int64_t channels = context.size(1);
  const int64_t tasks = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(), (kept + kGrain - 1) / kGrain));
  auto partial = at::zeros({tasks, context.size(0), channels}, context.options());
  const scalar_t* grad = grad_volume.data_ptr<scalar_t>();
  const scalar_t* weights = depth.data_ptr<scalar_t>();
  scalar_t* out = partial.data_ptr<scalar_t>();
  const int64_t per_task = (kept + tasks - 1) / tasks;
  at::parallel_for(0, tasks, 1, [&](int64_t first, int64_t last) {
    for (int64_t task = first; task < last; ++task) {
      scalar_t* own = out + task * context.size(0) * channels;
      const int64_t end = std::min(kept, (task + 1) * per_task);
      for (int64_t p = task * per_task; p < end; ++p) {
        const scalar_t weight = weights[point_index[p]];
        const scalar_t* grad_row = grad + voxel_index[p] * channels;
        scalar_t* row = own + context_index[p] * channels;
        for (int64_t c = 0; c < channels; ++c) row[c] += weight * grad_row[c];
      }
    }
  });
  return tasks == 1 ? partial[0] : partial.sum(0);
}

void validate_plan(const at::Tensor& depth, const at::Tensor& context,
                   const at::Tensor& point_index, const at::Tensor& voxel_index,
                   const at::Tensor& context_index, int64_t num_voxels) {
  const int64_t bad = first_bad_point(
      point_index.data_ptr<int64_t>(), voxel_index.data_ptr<int64_t>(),
      context_index.data_ptr<int64_t>(), point_index.numel(), depth.numel(), context.size(0),
      num_voxels);
  if (bad >= 0) raise_bad_point(bad, point_index, voxel_index, context_index);
}

}  // namespace

at::Tensor splat_forward(const at::Tensor& depth, const at::Tensor& context,
                            const at::Tensor& point_index, const at::Tensor& voxel_index,
                            const at::Tensor& context_index, int64_t num_voxels) {
  check_inputs(depth, context, point_index, voxel_index, context_index);
  if (depth.is_cuda()) {
#ifdef RENDERLSS_WITH_CUDA
    return splat_forward_cuda(depth, context, point_index, voxel_index, context_index,
                              num_voxels);
#else
    TORCH_CHECK(false, "splat segment sum: this build has no CUDA kernels");
#endif
  }
  validate_plan(depth, context, point_index, voxel_index, context_index, num_voxels);
  auto volume = at::zeros({num_voxels, context.size(1)}, context.options());
  AT_DISPATCH_FLOATING_TYPES(depth.scalar_type(), "splat_forward_cpu", [&] {
    forward_cpu_kernel<scalar_t>(depth.data_ptr<scalar_t>(), context.data_ptr<scalar_t>(),
                                 point_index.data_ptr<int64_t>(),
                                 voxel_index.data_ptr<int64_t>(),
                                 context_index.data_ptr<int64_t>(), point_index.numel(),
                                 context.size(1), volume.data_ptr<scalar_t>());
  });
  return volume;
}

// Returns (grad_depth, grad_context); an empty tensor where not needed.
std::tuple<at::Tensor, at::Tensor> splat_backward(const at::Tensor& grad_volume_in,
                                          const at::Tensor& depth,
                                          const at::Tensor& context,
                                          const at::Tensor& point_index,
                                          const at::Tensor& voxel_index,
                                          const at::Tensor& context_index, bool need_depth,
                                          bool need_context) {
  check_inputs(depth, context, point_index, voxel_index, context_index);
  const auto grad_volume = grad_volume_in.to(context.scalar_type()).contiguous();
  TORCH_CHECK(grad_volume.dim() == 2 && grad_volume.size(1) == context.size(1),
              "splat segment sum: grad_volume must be [V, C] with C = ", context.size(1),
              ", got ", grad_volume.sizes());
  if (depth.is_cuda()) {
#ifdef RENDERLSS_WITH_CUDA
    return splat_backward_cuda(grad_volume, depth, context, point_index, voxel_index,
                               context_index, need_depth, need_context);
#else
    TORCH_CHECK(false, "splat segment sum: this build has no CUDA kernels");
#endif
  }
  validate_plan(depth, context, point_index, voxel_index, context_index, grad_volume.size(0));
  at::Tensor grad_depth = at::empty({0}, depth.options());
  at::Tensor grad_context = at::empty({0}, context.options());
  AT_DISPATCH_FLOATING_TYPES(depth.scalar_type(), "splat_backward_cpu", [&] {
    if (need_depth) {
      grad_depth = at::zeros_like(depth);
      grad_depth_cpu_kernel<scalar_t>(
          grad_volume.data_ptr<scalar_t>(), context.data_ptr<scalar_t>(),
          point_index.data_ptr<int64_t>(), voxel_index.data_ptr<int64_t>(),
          context_index.data_ptr<int64_t>(), point_index.numel(), context.size(1),
          grad_depth.data_ptr<scalar_t>());
    }
    if (need_context) {
      grad_context = grad_context_cpu<scalar_t>(
          grad_volume, depth, context, point_index.data_ptr<int64_t>(),
          voxel_index.data_ptr<int64_t>(), context_index.data_ptr<int64_t>(),
          point_index.numel());
    }
  });
  return {grad_depth, grad_context};
}

bool has_cuda() {
#ifdef RENDERLSS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

TORCH_LIBRARY(renderlss, m) {
  m.def(
      "splat_forward(Tensor depth, Tensor context, Tensor point_index, Tensor voxel_index, "
      "Tensor context_index, int num_voxels) -> Tensor",
      &splat_forward);
  m.def(
      "splat_backward(Tensor grad_volume, Tensor depth, Tensor context, Tensor point_index, "
      "Tensor voxel_index, Tensor context_index, bool need_depth, bool need_context) "
      "-> (Tensor, Tensor)",
      &splat_backward);
  m.def("splat_has_cuda() -> bool", &has_cuda);
}
