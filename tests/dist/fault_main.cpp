// A two-rank job in which rank 1 goes wrong, for tests/dist/faults.sh: the other rank must not wait forever.
//   test_dist_fault throw   rank 1 throws selfsup::Error; its handler calls dist::abort_job (as the CLI's does)
//   test_dist_fault die     rank 1 is killed (SIGKILL) while rank 0 waits in an all_reduce
//   test_dist_fault hang    rank 1 sleeps; rank 0's all_reduce times out (SELFSUP_DIST_TIMEOUT) and aborts
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include <unistd.h>

#include "engine/core/check.h"
#include "engine/dist/communicator.h"

using namespace selfsup;

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    SELFSUP_CHECK(mode == "throw" || mode == "die" || mode == "hang", "usage: test_dist_fault throw|die|hang");
    dist::Communicator& c = dist::world();
    SELFSUP_CHECK(c.world_size() >= 2, "test_dist_fault: run it under mpirun -np 2 or more");
    Tensor t = Tensor::ones({1024});
    c.all_reduce(t);  // every rank is up
    if (c.rank() == 1) {
      if (mode == "throw") throw Error("rank 1 fails on purpose");
      if (mode == "die") std::raise(SIGKILL);
      if (mode == "hang") sleep(600);
    }
    c.all_reduce(t);  // rank 0 waits here for rank 1
    std::printf("rank %d: finished\n", c.rank());
    return 0;
  } catch (const std::exception& e) {
    dist::abort_job(e.what());
    std::fprintf(stderr, "test_dist_fault: error: %s\n", e.what());
    return 1;
  }
}
