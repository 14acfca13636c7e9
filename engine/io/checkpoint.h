// Training checkpoints: everything a run needs to resume exactly, in one safetensors file.
//
// Tensors are grouped by prefix:
//   model.<name>                 the model's parameters and buffers (torchvision names for ResNets)
//   optim.<name>                 Optimizer::state_dict() (lrs, step counts, momentum/Adam buffers)
//   method.<name>                the SSL method's own state: queues, memory banks, momentum encoder
//   loader.<name>                the data position (e.g. epoch permutation seed, next index)
//   rng.<name>.seed|stream|offset  each named Philox generator as three int64 scalars (uint64 bit patterns)
// and __metadata__ holds format ("selfsup.checkpoint"), format_version, step, epoch and config (the run's
// configuration as a JSON string), plus any extra string entries, and (format version 2) the file's CRC-32
// (safetensors.h, kSafetensorsChecksumKey), so damage is detected on load.
//
// save_checkpoint to a directory writes ckpt-<step>.safetensors atomically, then the `latest` pointer file
// (atomically, naming that file), then prunes to the newest `keep_last` checkpoints by step among those up
// to this step (a higher step is from a timeline a resumed run abandoned; it stays until passed). Each step is atomic on its own, and the order means a crash at any point leaves `latest`
// naming a complete checkpoint. A failed write (a full disk) throws and leaves the previous checkpoint as it was.
//
// Loading a directory falls back over damage: when the newest checkpoint fails to load (truncated,
// zeroed, bit-flipped: the checksum or the parser says so) the next older one is loaded, with a warning on
// stderr naming the damaged file and the step loaded. Only when every checkpoint fails is it an error,
// naming each file and what is wrong with it.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/core/rng.h"
#include "engine/io/safetensors.h"

namespace selfsup {

constexpr int kCheckpointFormatVersion = 2;  // 2: a checksum is required (1: none)

struct Checkpoint {
  int64_t step = 0;
  int64_t epoch = 0;
  std::string config_json = "{}";  // must be valid JSON
  TensorMap model, optim, method, loader;  // names without their prefix
  std::map<std::string, Generator> rng;
  Metadata extra;  // further metadata entries (names must not clash with the reserved ones)
  // Set by load_checkpoint, ignored by save_checkpoint:
  std::string source;   // the file it was read from
  std::string warning;  // the fallback warning (also printed to stderr), empty when the newest file loaded
  std::vector<std::string> damaged;  // the newer files of the directory that failed to load
};

// `dir_or_path` ending in ".safetensors" is a file, written atomically (no pointer file, no pruning);
// anything else is a directory (created if missing) managed as described above. Returns the file written.
std::string save_checkpoint(const std::string& dir_or_path, const Checkpoint& ckpt, int keep_last = 2);

// Loads a checkpoint file, or the one a directory's `latest` names (without `latest`: the highest step),
// falling back to older ones in the directory when it is damaged (above). Errors name the file and what is
// wrong: no checkpoint in a directory, a damaged file, not a selfsup checkpoint, a newer format version,
// an unknown prefix, an incomplete generator.
Checkpoint load_checkpoint(const std::string& path_or_dir);

// The checkpoint file load_checkpoint(dir) would read, or "" when the directory holds none.
std::string latest_checkpoint(const std::string& dir);

}  // namespace selfsup
