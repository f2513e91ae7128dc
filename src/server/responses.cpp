#include "server/responses.h"

#include <nlohmann/json.hpp>

namespace bitnet::server {
namespace {

using ojson = nlohmann::ordered_json;

// Model output may hold invalid UTF-8 (a token that splits a character): replaced, never thrown.
std::string dump(const ojson& j) {
  return j.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

std::string finish_reason(Finish f) {
  return f == Finish::kLength ? "length" : "stop";
}

ojson token_entry(const Tokenizer& tok, int32_t id, float logprob) {
  const std::string& b = tok.token_bytes(id);
  ojson bytes = ojson::array();
  for (unsigned char c : b) bytes.push_back(c);
  return ojson{{"token", b}, {"logprob", logprob}, {"bytes", bytes}};
}

// text_offset: where the first token's bytes start in the answer's text; advanced past the tokens.
ojson logprobs_json(const AnswerInfo& a, const std::vector<TokenLogprob>& lps, int64_t& text_offset) {
  if (!a.logprobs) return nullptr;
  const Tokenizer& tok = *a.tok;
  if (a.endpoint == Endpoint::kChat) {
    ojson content = ojson::array();
    for (const TokenLogprob& lp : lps) {
      ojson e = token_entry(tok, lp.id, lp.logprob);
      ojson top = ojson::array();
      for (const auto& [id, l] : lp.top) top.push_back(token_entry(tok, id, l));
      e["top_logprobs"] = std::move(top);
      content.push_back(std::move(e));
    }
    return ojson{{"content", std::move(content)}};
  }
  ojson tokens = ojson::array(), token_lps = ojson::array(), tops = ojson::array(), offsets = ojson::array();
  for (const TokenLogprob& lp : lps) {
    tokens.push_back(tok.token_bytes(lp.id));
    token_lps.push_back(lp.logprob);
    ojson top = ojson::object();
    for (const auto& [id, l] : lp.top) top[tok.token_bytes(id)] = l;
    tops.push_back(std::move(top));
    offsets.push_back(text_offset);
    text_offset += static_cast<int64_t>(tok.token_bytes(lp.id).size());
  }
  return ojson{
      {"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

ojson head(const AnswerInfo& a, bool chunk) {
  const char* object = a.endpoint == Endpoint::kChat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                     : "text_completion";
  return ojson{{"id", a.id}, {"object", object}, {"created", a.created}, {"model", a.model}};
}

ojson usage(const Output& out) {
  return ojson{{"prompt_tokens", out.prompt_tokens},
               {"completion_tokens", out.completion_tokens},
               {"total_tokens", out.prompt_tokens + out.completion_tokens}};
}

std::string event(const ojson& j) {
  return "data: " + dump(j) + "\n\n";
}

ojson stream_choice(const AnswerInfo& a, ojson delta_or_text, ojson logprobs, ojson finish) {
  ojson c{{"index", 0}};
  if (a.endpoint == Endpoint::kChat)
    c["delta"] = std::move(delta_or_text);
  else
    c["text"] = std::move(delta_or_text);
  c["logprobs"] = std::move(logprobs);
  c["finish_reason"] = std::move(finish);
  return c;
}

}  // namespace

std::string error_json(const ApiError& e) {
  ojson err{{"message", e.what()},
            {"type", e.type},
            {"param", e.param.empty() ? ojson(nullptr) : ojson(e.param)},
            {"code", nullptr}};
  if (e.status == 400 && std::string(e.what()).find("context") != std::string::npos)
    err["code"] = "context_length_exceeded";
  return dump(ojson{{"error", std::move(err)}});
}

std::string answer_json(const AnswerInfo& a, const Output& out) {
  ojson j = head(a, false);
  ojson choice{{"index", 0}};
  if (a.endpoint == Endpoint::kChat)
    choice["message"] = ojson{{"role", "assistant"}, {"content", out.text}};
  else
    choice["text"] = out.text;
  int64_t text_offset = 0;
  choice["logprobs"] = logprobs_json(a, out.logprobs, text_offset);
  choice["finish_reason"] = finish_reason(out.finish);
  j["choices"] = ojson::array({std::move(choice)});
  j["usage"] = usage(out);
  return dump(j);
}

std::string sse_role(const AnswerInfo& a) {
  ojson j = head(a, true);
  j["choices"] =
      ojson::array({stream_choice(a, ojson{{"role", "assistant"}, {"content", ""}}, nullptr, nullptr)});
  return event(j);
}

std::string sse_delta(const AnswerInfo& a, const std::string& text, const std::vector<TokenLogprob>& lps,
                      int64_t& text_offset) {
  ojson j = head(a, true);
  ojson d = a.endpoint == Endpoint::kChat ? ojson{{"content", text}} : ojson(text);
  j["choices"] = ojson::array({stream_choice(a, std::move(d), logprobs_json(a, lps, text_offset), nullptr)});
  return event(j);
}

std::string sse_finish(const AnswerInfo& a, Finish f) {
  ojson j = head(a, true);
  ojson d = a.endpoint == Endpoint::kChat ? ojson::object() : ojson("");
  j["choices"] = ojson::array({stream_choice(a, std::move(d), nullptr, finish_reason(f))});
  return event(j);
}

std::string sse_usage(const AnswerInfo& a, const Output& out) {
  ojson j = head(a, true);
  j["choices"] = ojson::array();
  j["usage"] = usage(out);
  return event(j);
}

std::string sse_error(const ApiError& e) {
  return "data: " + error_json(e) + "\n\n";
}

}  // namespace bitnet::server
