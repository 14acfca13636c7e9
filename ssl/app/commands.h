// Subcommands of the selfsup CLI. Each takes the arguments after the command name and returns the exit code.
#pragma once
#include <string>
#include <vector>

namespace selfsup::app {

int cmd_info(const std::vector<std::string>& args);
int cmd_demo(const std::vector<std::string>& args);
int cmd_augment(const std::vector<std::string>& args);
int cmd_train(const std::vector<std::string>& args);
int cmd_eval(const std::vector<std::string>& args);
int cmd_finetune(const std::vector<std::string>& args);  // `eval finetune`
int cmd_embed(const std::vector<std::string>& args);
int cmd_compare(const std::vector<std::string>& args);
int cmd_supervised(const std::vector<std::string>& args);
int cmd_inpaint(const std::vector<std::string>& args);

}  // namespace selfsup::app
