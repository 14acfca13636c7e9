// A small command-line parser for the subcommands: `--name value` or `--name=value` options and
// `--name` switches. Every option a command reads is declared by reading it; finish() then rejects
// anything left over, so a misspelt flag is an error rather than silently ignored.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace selfsup::app {

class Args {
 public:
  Args(const std::vector<std::string>& args, std::string command);
  bool help() const { return help_; }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  // Switch (no value): present or not.
  bool flag(const std::string& name);
  std::string str(const std::string& name, const std::string& def);
  double number(const std::string& name, double def);
  int64_t integer(const std::string& name, int64_t def);
  // Throws naming the first option that no read consumed.
  void finish() const;

 private:
  std::string command_;
  std::map<std::string, std::string> values_;  // name -> value ("" for a switch)
  std::map<std::string, bool> used_;
  bool help_ = false;
};

}  // namespace selfsup::app
