#pragma once
// OpenAI's response bodies: whole answers, server-sent-event chunks of streamed ones, errors.
#include <cstdint>
#include <string>
#include <vector>

#include "server/api_error.h"
#include "server/request.h"
#include "server/scheduler.h"
#include "tokenizer/tokenizer.h"

namespace bitnet::server {

struct AnswerInfo {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string id;       // "chatcmpl-..." / "cmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
  bool logprobs = false;
  const Tokenizer* tok = nullptr;  // token texts of log-probabilities
};

// {"error": {"message", "type", "param", "code"}} as text.
std::string error_json(const ApiError& e);
// The whole answer of a request that was not streamed (out: everything taken, finished).
std::string answer_json(const AnswerInfo& a, const Output& out);
// One "data: {...}\n\n" event of a stream: the role (chat, first event), new text and
// log-probabilities, or the finish reason (finish != kNone, no text).
std::string sse_role(const AnswerInfo& a);
// text_offset (completions' logprobs): where this event's first token starts in the answer's
// text, advanced past its tokens for the next event.
std::string sse_delta(const AnswerInfo& a, const std::string& text, const std::vector<TokenLogprob>& lps,
                      int64_t& text_offset);
std::string sse_finish(const AnswerInfo& a, Finish f);
std::string sse_usage(const AnswerInfo& a, const Output& out);  // stream_options.include_usage
std::string sse_error(const ApiError& e);
inline const char* sse_done() {
  return "data: [DONE]\n\n";
}

}  // namespace bitnet::server
