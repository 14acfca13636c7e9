// Errors. Everything that can go wrong because of user input throws selfsup::Error with a message that
// names the op (or file/field) and what was expected; the CLI catches it, prints one line, exits non-zero.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace selfsup {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// Concatenates its arguments with operator<< into one string.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

[[noreturn]] inline void throw_error(const std::string& msg) { throw Error(msg); }

}  // namespace selfsup

// SELFSUP_CHECK(cond, "op: expected ...", value, ...) throws selfsup::Error when cond is false.
#define SELFSUP_CHECK(cond, ...)                                   \
  do {                                                             \
    if (!(cond)) ::selfsup::throw_error(::selfsup::str_cat(__VA_ARGS__)); \
  } while (0)
