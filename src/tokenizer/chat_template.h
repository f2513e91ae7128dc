#pragma once
// Chat templates: a conversation (system / user / assistant messages) as the token ids a chat
// model was trained on, ending with the assistant's open turn. Used by `bitnet chat` and the
// server. The template's own markers are parsed as special tokens; message text never is, so a
// user cannot inject "<|eot_id|>" or a fake turn.
//
//   bitnet (BitNet b1.58 2B4T): System: {s}<|eot_id|>User: {u}<|eot_id|>Assistant: {a}<|eot_id|>Assistant:
//   llama3: <|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|> ...
//   <|start_header_id|>assistant<|end_header_id|>\n\n
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace bitnet {

enum class ChatTemplate { kBitnet, kLlama3 };

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

std::optional<ChatTemplate> chat_template_from_name(std::string_view name);
const char* chat_template_name(ChatTemplate t);
// llama3 when the vocabulary has <|start_header_id|>, else bitnet.
ChatTemplate default_chat_template(const Tokenizer& tok);

// The messages in the template followed by the assistant's open turn; BOS first when add_bos
// and the tokenizer has one. Throws bitnet::Error on a role other than system/user/assistant.
std::vector<int32_t> encode_chat(const Tokenizer& tok, ChatTemplate t, std::span<const ChatMessage> messages,
                                 bool add_bos);

// Token ids that end an assistant turn: the tokenizer's EOS/EOT and <|eot_id|> where present.
std::vector<int32_t> chat_stop_ids(const Tokenizer& tok);
// The template's markers that the vocabulary has no special token for (they are then encoded as
// plain text, which the model was not trained on): empty where the template fits the vocabulary.
std::vector<std::string> missing_chat_markers(const Tokenizer& tok, ChatTemplate t);
// The tokens that end a turn as encode_chat writes them (both templates: "<|eot_id|>"), for an
// answer cut before the model ended it, so that the next turn follows a closed one.
std::vector<int32_t> chat_turn_end(const Tokenizer& tok);

}  // namespace bitnet
