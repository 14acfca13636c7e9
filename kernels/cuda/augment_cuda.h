// CUDA launcher of the fused augmentation pipeline (kernels/cuda/augment.cu). It mirrors augment_views_cpu
// (kernels/augment_api.h) with the same arguments and semantics, minus `threads`, plus the output type, two
// float32 buffers and the trailing stream. Every pointer is device memory:
//   src       uint8 (store, H, W, C), C = 1 or 3
//   src_index int64 (N) selecting the source of output n from the store, or null (image n); already validated
//   params    AugmentParams (N), already validated (crops inside the source)
//   out       float32 or bfloat16 (N, C, recipe.out_h, recipe.out_w), normalized (bf16: float32 math, one
//             round-to-nearest-even at the store)
//   work      float32 (N, C, out_h, out_w): the working image between the kernel's phases, needed only for a
//             bf16 output when some image has contrast or blur (a float32 output is its own working image;
//             the argument is then ignored); may be null otherwise
//   scratch   float32 (N, C, out_h, out_w): the blur's row pass; needed when recipe.blur_ksize > 1 (else may
//             be null)
// augment_cuda_buffers() gives the recipe-level (conservative) rule for both buffers; a caller that knows
// the parameters may pass null where no image needs a buffer. Parameters that need a buffer that is null
// stop the kernel with a device trap (an error at the next synchronisation) rather than write through null.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/augment_params.h"

namespace selfsup::kernels {

enum class AugOutType : uint8_t { f32, bf16 };

// Which float32 buffers (N, C, out_h, out_w) a batch sampled from `recipe` may need.
struct AugCudaBuffers {
  bool work = false, scratch = false;
};
inline AugCudaBuffers augment_cuda_buffers(const AugmentRecipe& r, AugOutType out_type) {
  const bool blur = r.blur_ksize > 1;
  const bool contrast = r.jitter_p > 0 && r.contrast > 0;  // sample_augment_params leaves contrast = 1 otherwise
  return AugCudaBuffers{out_type == AugOutType::bf16 && (blur || contrast), blur};
}

void augment_views_cuda(const AugmentRecipe& recipe, int64_t N, int32_t H, int32_t W, int32_t C,
                        const uint8_t* src, const int64_t* src_index, const AugmentParams* params, void* out,
                        AugOutType out_type, float* work, float* scratch, cudaStream_t stream);

}  // namespace selfsup::kernels
