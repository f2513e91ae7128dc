#pragma once
// Stop strings over streamed text. Generated text is released as it comes, except a tail that
// could still grow into a stop string: a client must never see part of a stop string, so "Hel"
// is held while "Hello" is a stop string, and released once the next text rules the match out.
#include <string>
#include <string_view>
#include <vector>

namespace bitnet::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops = {}) : stops_(std::move(stops)) {}
  // Appends text and returns what can be shown now. When a stop string appears, returns the text
  // before it, drops everything from it on and matched() turns true (push then returns "").
  std::string push(std::string_view text);
  // The held tail at the end of generation (no stop string can complete any more).
  std::string flush();
  bool matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool matched_ = false;
};

}  // namespace bitnet::server
