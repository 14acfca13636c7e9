// CUDA launcher of the fused augmentation pipeline (kernels/cuda/augment.cu). It mirrors augment_views_cpu
// (kernels/augment_api.h) with the same arguments and semantics, minus `threads`, plus a blur scratch buffer
// and the trailing stream. Every pointer is device memory:
//   src       uint8 (store, H, W, C), C = 1 or 3
//   src_index int64 (N) selecting the source of output n from the store, or null (image n); already validated
//   params    AugmentParams (N), already validated (crops inside the source)
//   out       float (N, C, recipe.out_h, recipe.out_w), normalized
//   scratch   float (N, C, recipe.out_h, recipe.out_w); needed only when recipe.blur_ksize > 1 (else may be null)
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/augment_params.h"

namespace selfsup::kernels {

void augment_views_cuda(const AugmentRecipe& recipe, int64_t N, int32_t H, int32_t W, int32_t C,
                        const uint8_t* src, const int64_t* src_index, const AugmentParams* params, float* out,
                        float* scratch, cudaStream_t stream);

}  // namespace selfsup::kernels
