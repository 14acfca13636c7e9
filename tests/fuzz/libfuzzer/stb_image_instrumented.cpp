// stb_image's decoders compiled into the fuzz programs, with the fuzz build's ASan + UBSan and coverage
// instrumentation. Debian's libstb.so is not instrumented: through it libFuzzer would see none of the
// decoders' branches (every image format looks alike) and ASan none of their memory accesses. These
// definitions, in the executable, take precedence over the shared library's for the engine's calls.
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
