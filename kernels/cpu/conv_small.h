// Convolutions whose output map is tiny (at most 4 positions per image), float, as one GEMM over the whole
// batch. Internal to kernels/cpu: conv.cpp dispatches here; the tests ask which shapes are taken.
#pragma once

#include "kernels/kernel_api.h"

namespace selfsup::kernels::conv_small {

// Whether the float kernels of conv.cpp take this path for `s`: groups 1 and P * Q <= 4 (the last stages of a
// ResNet on the 8x8 tiles of PIRL's and Jigsaw's 3x3 puzzles: 2x2 and 1x1 maps, where oneDNN runs one small
// GEMM per image).
bool applies(const Conv2dShape& s);

// The same contracts as conv2d_{fwd,bwd_data,bwd_weight}_cpu<float> (kernel_api.h); s.N > 0.
void fwd(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y);
void bwd_data(const Conv2dShape& s, const float* dy, const float* w, float* dx);
void bwd_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw, float* dbias);

}  // namespace selfsup::kernels::conv_small
