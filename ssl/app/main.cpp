// The selfsup command line. Every subcommand validates its arguments; any selfsup::Error is caught here,
// printed as one line, and the process exits non-zero.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "engine/core/check.h"
#include "engine/dist/communicator.h"
#include "ssl/app/commands.h"

namespace {

void print_usage() {
  std::printf(
      "selfsup %s: self-supervised learning engine\n\n"
      "usage: selfsup <command> [options]\n\n"
      "commands:\n"
      "  train       self-supervised training (SimCLR) with a kNN monitor, checkpoints and exact resume\n"
      "  eval        linear probe, kNN or fine-tuning of a trained encoder (eval linear|knn|finetune)\n"
      "  compare     one table (terminal, markdown, PNG) of every protocol's result across encoders\n"
      "  embed       write an encoder's features as a NumPy .npy file\n"
      "  augment     preview augmentation views of a dataset as a PNG grid\n"
      "  inpaint     a Context Encoder run's inpainting as a PNG grid (original | masked | completed)\n"
      "  demo        the default SSL job: SimCLR on Fashion-MNIST, then the linear probe, one summary\n"
      "  supervised  a small supervised CNN on Fashion-MNIST (a quick check of the whole stack)\n"
      "  info        version, build options, devices\n\n"
      "Run 'selfsup <command> --help' for the options of a command.\n",
      SELFSUP_VERSION);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (cmd == "info") return selfsup::app::cmd_info(args);
    if (cmd == "train") return selfsup::app::cmd_train(args);
    if (cmd == "eval") return selfsup::app::cmd_eval(args);
    if (cmd == "embed") return selfsup::app::cmd_embed(args);
    if (cmd == "compare") return selfsup::app::cmd_compare(args);
    if (cmd == "demo") return selfsup::app::cmd_demo(args);
    if (cmd == "supervised") return selfsup::app::cmd_supervised(args);
    if (cmd == "augment") return selfsup::app::cmd_augment(args);
    if (cmd == "inpaint") return selfsup::app::cmd_inpaint(args);
    throw selfsup::Error("unknown command '" + cmd + "' (selfsup --help lists the commands)");
  } catch (const std::exception& e) {
    // Messages from inside a command often name it already ("train: --batch ..."): say it once.
    std::string msg = e.what();
    if (msg.rfind(cmd + ": ", 0) == 0) msg.erase(0, cmd.size() + 2);
    // One rank of a data-parallel job: print, then end every rank (none waits forever on this one).
    selfsup::dist::abort_job(selfsup::str_cat(cmd, ": ", msg));
    std::fprintf(stderr, "selfsup %s: error: %s\n", cmd.c_str(), msg.c_str());
    return 1;
  }
}
