#include "server/request.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace bitnet::server {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& msg) {
  throw ApiError(400, msg, param);
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    default:
      return "something else";
  }
}

// Field readers: absent and null leave `out` as it is; a wrong type or range throws.
bool get_bool(const json& o, const char* key, bool& out) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return false;
  if (!it->is_boolean()) bad(key, std::string("'") + key + "' must be a boolean, not " + type_name(*it));
  out = it->get<bool>();
  return true;
}

bool get_int(const json& o, const char* key, int64_t lo, int64_t hi, int64_t& out) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return false;
  const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  if (it->is_number_float()) {
    const double d = it->get<double>();
    if (d != std::floor(d)) bad(key, std::string("'") + key + "' must be an integer, not " + it->dump());
    // 2^63 is where int64 ends: a double equal to it would not convert.
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi) || d >= 9223372036854775808.0)
      bad(key, std::string("'") + key + "' = " + it->dump() + " is outside " + range);
    out = static_cast<int64_t>(d);
    return true;
  }
  if (it->is_number_unsigned()) {
    const uint64_t u = it->get<uint64_t>();
    if (u > static_cast<uint64_t>(hi) || (lo > 0 && u < static_cast<uint64_t>(lo)))
      bad(key, std::string("'") + key + "' = " + it->dump() + " is outside " + range);
    out = static_cast<int64_t>(u);
    return true;
  }
  if (!it->is_number_integer())
    bad(key, std::string("'") + key + "' must be an integer, not " + type_name(*it));
  const int64_t v = it->get<int64_t>();
  if (v < lo || v > hi)
    bad(key, std::string("'") + key + "' = " + std::to_string(v) + " is outside " + range);
  out = v;
  return true;
}

bool get_num(const json& o, const char* key, double lo, double hi, float& out) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return false;
  if (!it->is_number()) bad(key, std::string("'") + key + "' must be a number, not " + type_name(*it));
  const double v = it->get<double>();
  if (!(v >= lo && v <= hi)) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "'%s' = %s is outside [%g, %g]", key, it->dump().c_str(), lo, hi);
    bad(key, buf);
  }
  out = static_cast<float>(v);
  return true;
}

std::string get_string(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return {};
  if (!it->is_string()) bad(key, std::string("'") + key + "' must be a string, not " + type_name(*it));
  return it->get<std::string>();
}

// Text of a message's content: a string or an array of {"type": "text", "text": ...} parts.
std::string message_content(const json& c, const std::string& where) {
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array())
    bad(where, "'" + where + "' must be a string or an array of text parts, not " + type_name(c));
  std::string text;
  for (size_t i = 0; i < c.size(); ++i) {
    const json& p = c[i];
    const std::string pw = where + "[" + std::to_string(i) + "]";
    if (!p.is_object()) bad(pw, "'" + pw + "' must be an object, not " + type_name(p));
    auto t = p.find("type");
    if (t == p.end() || !t->is_string()) bad(pw + ".type", "'" + pw + ".type' must be the string \"text\"");
    if (*t != "text")
      bad(pw + ".type", "'" + pw + ".type' = " + t->dump() + " is not supported (only \"text\")");
    auto x = p.find("text");
    if (x == p.end() || !x->is_string()) bad(pw + ".text", "'" + pw + ".text' must be a string");
    text += x->get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& body) {
  auto it = body.find("messages");
  if (it == body.end() || it->is_null()) bad("messages", "'messages' is required");
  if (!it->is_array()) bad("messages", std::string("'messages' must be an array, not ") + type_name(*it));
  if (it->empty()) bad("messages", "'messages' must hold at least one message");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string w = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad(w, "'" + w + "' must be an object, not " + type_name(m));
    for (const auto& [k, v] : m.items())
      if (k != "role" && k != "content" && k != "name")
        bad(w + "." + k, "'" + w + "." + k + "' is not supported");
    auto r = m.find("role");
    if (r == m.end() || r->is_null()) bad(w + ".role", "'" + w + ".role' is required");
    if (!r->is_string()) bad(w + ".role", "'" + w + ".role' must be a string, not " + type_name(*r));
    std::string role = r->get<std::string>();
    if (role == "developer") role = "system";  // OpenAI's newer name for the system role
    if (role != "system" && role != "user" && role != "assistant")
      bad(w + ".role", "'" + w + ".role' = \"" + r->get<std::string>() +
                           "\" is not one of system, developer, user, assistant");
    auto c = m.find("content");
    if (c == m.end() || c->is_null()) bad(w + ".content", "'" + w + ".content' is required");
    out.push_back({role, message_content(*c, w + ".content")});
  }
  return out;
}

void parse_prompt(const json& body, const RequestLimits& lim, GenerationRequest& r) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) bad("prompt", "'prompt' is required");
  const json* p = &*it;
  // n = 1: an array may hold one prompt (a string or token ids) or be the token ids itself.
  if (p->is_array() && !p->empty() && ((*p)[0].is_string() || (*p)[0].is_array())) {
    if (p->size() != 1)
      bad("prompt",
          "'prompt' holds " + std::to_string(p->size()) + " prompts; this server answers one per request");
    p = &(*p)[0];
  }
  if (p->is_string()) {
    r.prompt = p->get<std::string>();
    return;
  }
  if (!p->is_array())
    bad("prompt", std::string("'prompt' must be a string or an array of token ids, not ") + type_name(*p));
  if (p->empty()) bad("prompt", "'prompt' is an empty array");
  r.prompt_is_ids = true;
  for (size_t i = 0; i < p->size(); ++i) {
    const json& t = (*p)[i];
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= lim.n_vocab)
      bad("prompt", "'prompt[" + std::to_string(i) + "]' = " + t.dump() + " is not a token id in [0, " +
                        std::to_string(lim.n_vocab) + ")");
    r.prompt_ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
}

void parse_stop(const json& body, GenerationRequest& r) {
  auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return;
  if (it->is_string()) {
    if (it->get<std::string>().empty()) bad("stop", "'stop' must not be an empty string");
    r.stop.push_back(it->get<std::string>());
    return;
  }
  if (!it->is_array())
    bad("stop", std::string("'stop' must be a string or an array of strings, not ") + type_name(*it));
  if (it->size() > 4)
    bad("stop", "'stop' holds " + std::to_string(it->size()) + " strings; at most 4 are allowed");
  for (const json& s : *it) {
    if (!s.is_string()) bad("stop", std::string("'stop' must hold strings, not ") + type_name(s));
    if (s.get<std::string>().empty()) bad("stop", "'stop' must not hold an empty string");
    r.stop.push_back(s.get<std::string>());
  }
}

}  // namespace

GenerationRequest parse_request(Endpoint ep, std::string_view body_text, const RequestLimits& lim) {
  if (body_text.empty()) throw ApiError(400, "the request body is empty; expected a JSON object");
  json body;
  try {
    body = json::parse(body_text);
  } catch (const json::parse_error& e) {
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!body.is_object())
    throw ApiError(400, std::string("the request body must be a JSON object, not ") + type_name(body));

  static const std::vector<std::string> common = {"model",
                                                  "max_tokens",
                                                  "temperature",
                                                  "top_p",
                                                  "top_k",
                                                  "min_p",
                                                  "repeat_penalty",
                                                  "seed",
                                                  "stop",
                                                  "stream",
                                                  "stream_options",
                                                  "n",
                                                  "user",
                                                  "frequency_penalty",
                                                  "presence_penalty",
                                                  "logit_bias",
                                                  "logprobs"};
  static const std::vector<std::string> chat_only = {"messages", "top_logprobs", "max_completion_tokens"};
  static const std::vector<std::string> completion_only = {"prompt", "echo", "suffix", "best_of"};
  const auto& own = ep == Endpoint::kChat ? chat_only : completion_only;
  for (const auto& [k, v] : body.items()) {
    if (std::find(common.begin(), common.end(), k) == common.end() &&
        std::find(own.begin(), own.end(), k) == own.end())
      bad(k, "unrecognized request argument '" + k + "'");
  }

  GenerationRequest r;
  r.endpoint = ep;
  r.model = get_string(body, "model");
  if (ep == Endpoint::kChat)
    r.messages = parse_messages(body);
  else
    parse_prompt(body, lim, r);

  int64_t v = 0;
  r.max_tokens = lim.default_max_tokens;
  if (get_int(body, "max_tokens", 1, lim.n_ctx, v)) r.max_tokens = static_cast<int>(v);
  if (ep == Endpoint::kChat && get_int(body, "max_completion_tokens", 1, lim.n_ctx, v))
    r.max_tokens = static_cast<int>(v);
  get_int(body, "n", 1, 1, v);  // one answer per request
  get_int(body, "best_of", 1, 1, v);

  r.sampling = lim.sampling;
  get_num(body, "temperature", 0, 2, r.sampling.temperature);
  get_num(body, "top_p", 0, 1, r.sampling.top_p);
  if (get_int(body, "top_k", 0, 1 << 30, v)) r.sampling.top_k = static_cast<int>(v);
  get_num(body, "min_p", 0, 1, r.sampling.min_p);
  get_num(body, "repeat_penalty", 0.01, 100, r.sampling.repeat_penalty);
  if (get_int(body, "seed", INT64_MIN, INT64_MAX, v)) {
    r.sampling.seed = static_cast<uint64_t>(v);
    r.seed_given = true;
  }
  for (const char* k : {"frequency_penalty", "presence_penalty"}) {
    float f = 0;
    if (get_num(body, k, -2, 2, f) && f != 0)
      bad(k, std::string("'") + k + "' other than 0 is not supported (repeat_penalty is)");
  }
  if (auto it = body.find("logit_bias"); it != body.end() && !it->is_null()) {
    if (!it->is_object())
      bad("logit_bias", std::string("'logit_bias' must be an object, not ") + type_name(*it));
    if (!it->empty()) bad("logit_bias", "'logit_bias' is not supported");
  }
  bool echo = false;
  if (get_bool(body, "echo", echo) && echo) bad("echo", "'echo' = true is not supported");
  if (auto it = body.find("suffix"); it != body.end() && !it->is_null())
    bad("suffix", "'suffix' is not supported");
  get_string(body, "user");
  parse_stop(body, r);

  get_bool(body, "stream", r.stream);
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!r.stream) bad("stream_options", "'stream_options' is only allowed with 'stream': true");
    if (!it->is_object())
      bad("stream_options", std::string("'stream_options' must be an object, not ") + type_name(*it));
    for (const auto& [k, x] : it->items())
      if (k != "include_usage")
        bad("stream_options." + k, "unrecognized argument 'stream_options." + k + "'");
    get_bool(*it, "include_usage", r.include_usage);
  }

  if (ep == Endpoint::kChat) {
    bool logprobs = false;
    get_bool(body, "logprobs", logprobs);
    int64_t top = 0;
    const bool has_top = get_int(body, "top_logprobs", 0, 20, top);
    if (has_top && !logprobs) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (logprobs) r.top_logprobs = static_cast<int>(top);
  } else if (get_int(body, "logprobs", 0, 5, v)) {
    r.top_logprobs = static_cast<int>(v);
  }
  return r;
}

}  // namespace bitnet::server
