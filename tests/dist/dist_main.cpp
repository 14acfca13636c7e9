// The main of test_dist: starts the job (MPI under mpirun), runs the doctest cases on every rank, and exits
// non-zero on every rank when any rank failed, so mpirun's status is the job's.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "engine/dist/communicator.h"

int main(int argc, char** argv) {
  selfsup::dist::Communicator& c = selfsup::dist::world();
  std::printf("test_dist: rank %d of %d (%s)\n", c.rank(), c.world_size(), c.launcher().c_str());
  doctest::Context ctx(argc, argv);
  ctx.setOption("no-colors", true);  // mpirun gives the ranks a pseudo-terminal
  const int failed = ctx.run() != 0 ? 1 : 0;
  const double any = c.mean(failed);
  return any > 0 ? 1 : 0;
}
