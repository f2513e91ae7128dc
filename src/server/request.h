#pragma once
// The body of POST /v1/completions and /v1/chat/completions, parsed and checked. Every problem
// (malformed JSON, a field of the wrong type, a value out of range, an unknown field) is an
// ApiError with status 400 and a message naming the field, so no request reaches the model
// unchecked.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "inference/sampler.h"
#include "server/api_error.h"
#include "tokenizer/chat_template.h"

namespace bitnet::server {

enum class Endpoint { kCompletions, kChat };

struct RequestLimits {
  int64_t n_ctx = 4096;         // positions per sequence
  int32_t n_vocab = 0;          // for prompts given as token ids
  SamplerOptions sampling;      // the server's defaults (its --temp etc.)
  int default_max_tokens = -1;  // < 0: until the context is full
  bool random_seed = true;      // a request without "seed" gets a random one (else sampling.seed)
};

struct GenerationRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completions: text ...
  std::vector<int32_t> prompt_ids;    // ... or token ids
  bool prompt_is_ids = false;
  int max_tokens = -1;
  SamplerOptions sampling;
  bool seed_given = false;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int top_logprobs = -1;       // < 0: no log-probabilities
};

// Throws ApiError (400) naming the first problem.
GenerationRequest parse_request(Endpoint ep, std::string_view body, const RequestLimits& limits);

}  // namespace bitnet::server
