// The main of test_dist: starts the job (MPI under mpirun), runs the doctest cases on every rank, and exits
// non-zero on every rank when any rank failed, so mpirun's status is the job's.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "engine/core/cuda_context.h"
#include "engine/dist/communicator.h"

int main(int argc, char** argv) {
  selfsup::dist::Communicator& c = selfsup::dist::world();
  std::printf("test_dist: rank %d of %d (%s)\n", c.rank(), c.world_size(), c.launcher().c_str());
  if (!selfsup::dist::nccl_built())
    std::printf("test_dist: the NCCL case is SKIPPED: this build has no NCCL backend\n");
  else if (selfsup::cuda_device_count() == 0)
    std::printf("test_dist: the NCCL case is SKIPPED: %s\n", selfsup::cuda_no_device_reason().c_str());
  doctest::Context ctx(argc, argv);
  ctx.setOption("no-colors", true);  // mpirun gives the ranks a pseudo-terminal
  const int failed = ctx.run() != 0 ? 1 : 0;
  const double any = c.mean(failed);
  return any > 0 ? 1 : 0;
}
