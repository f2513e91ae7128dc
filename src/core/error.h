#pragma once
// Two kinds of failure:
//  * user errors (bad file, bad shape, unknown type): throw bitnet::Error with a message that names
//    the file, tensor or byte offset, so the CLI can print it and exit non-zero;
//  * programmer errors (broken invariants): BN_CHECK prints file:line and aborts.
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace bitnet {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

[[noreturn]] void check_failed(const char* file, int line, const char* cond, const std::string& msg);

}  // namespace bitnet

#define BN_CHECK(cond, ...)                                                                 \
  do {                                                                                       \
    if (!(cond)) [[unlikely]]                                                                \
      ::bitnet::check_failed(__FILE__, __LINE__, #cond, ::fmt::format("" __VA_ARGS__));      \
  } while (0)
