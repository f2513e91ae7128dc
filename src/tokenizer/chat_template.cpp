#include "tokenizer/chat_template.h"

#include <algorithm>

#include "core/error.h"

namespace bitnet {

std::optional<ChatTemplate> chat_template_from_name(std::string_view name) {
  if (name == "bitnet") return ChatTemplate::kBitnet;
  if (name == "llama3") return ChatTemplate::kLlama3;
  return std::nullopt;
}

const char* chat_template_name(ChatTemplate t) {
  return t == ChatTemplate::kLlama3 ? "llama3" : "bitnet";
}

ChatTemplate default_chat_template(const Tokenizer& tok) {
  return tok.special_id("<|start_header_id|>") >= 0 ? ChatTemplate::kLlama3 : ChatTemplate::kBitnet;
}

namespace {

void append(std::vector<int32_t>& out, const Tokenizer& tok, std::string_view text, bool markup) {
  if (text.empty()) return;
  EncodeOptions eo;
  eo.add_bos = false;
  eo.parse_special = markup;
  const std::vector<int32_t> ids = tok.encode(text, eo);
  out.insert(out.end(), ids.begin(), ids.end());
}

const char* bitnet_role(const std::string& role) {
  if (role == "system") return "System:";
  if (role == "user") return "User:";
  return "Assistant:";
}

}  // namespace

std::vector<int32_t> encode_chat(const Tokenizer& tok, ChatTemplate t, std::span<const ChatMessage> messages,
                                 bool add_bos) {
  std::vector<int32_t> out;
  if (add_bos && tok.bos_id() >= 0) out.push_back(tok.bos_id());
  for (const ChatMessage& m : messages) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant")
      fail("chat message role '{}' is not one of system, user, assistant", m.role);
    if (t == ChatTemplate::kLlama3) {
      append(out, tok, "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n", true);
      append(out, tok, m.content, false);
      append(out, tok, "<|eot_id|>", true);
    } else {
      // The marker ends before the text's leading space: the pre-tokenizer splits there anyway,
      // so the ids equal those of the whole string encoded at once.
      append(out, tok, bitnet_role(m.role), true);
      append(out, tok, " " + m.content, false);
      append(out, tok, "<|eot_id|>", true);
    }
  }
  if (t == ChatTemplate::kLlama3)
    append(out, tok, "<|start_header_id|>assistant<|end_header_id|>\n\n", true);
  else
    append(out, tok, "Assistant: ", true);
  return out;
}

std::vector<std::string> missing_chat_markers(const Tokenizer& tok, ChatTemplate t) {
  std::vector<std::string> missing;
  std::vector<const char*> markers = {"<|eot_id|>"};
  if (t == ChatTemplate::kLlama3) markers = {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
  for (const char* m : markers)
    if (tok.special_id(m) < 0) missing.emplace_back(m);
  return missing;
}

std::vector<int32_t> chat_turn_end(const Tokenizer& tok) {
  std::vector<int32_t> out;
  append(out, tok, "<|eot_id|>", true);
  return out;
}

std::vector<int32_t> chat_stop_ids(const Tokenizer& tok) {
  std::vector<int32_t> stops = tok.stop_ids();
  if (int32_t eot = tok.special_id("<|eot_id|>");
      eot >= 0 && std::find(stops.begin(), stops.end(), eot) == stops.end())
    stops.push_back(eot);
  return stops;
}

}  // namespace bitnet
