// SPDX-License-Identifier: Apache-2.0
// The DeepSeek-V4 conversation format (chat_encoding.h has the rules).
#include "runtime/chat/chat_encoding.h"

namespace compressa {

const char *chatRoleName(ChatRole role) {
  switch (role) {
  case ChatRole::System:
    return "system";
  case ChatRole::User:
    return "user";
  case ChatRole::Assistant:
    return "assistant";
  }
  return "unknown";
}

std::optional<size_t> findInvalidUtf8(std::string_view text) {
  size_t i = 0, size = text.size();
  while (i < size) {
    unsigned char lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    // The range of the second byte narrows for E0, ED, F0 and F4 so that
    // overlong forms, surrogates and code points past U+10FFFF are refused.
    unsigned char low = 0x80, high = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0)
        low = 0xA0;
      else if (lead == 0xED)
        high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0)
        low = 0x90;
      else if (lead == 0xF4)
        high = 0x8F;
    } else {
      return i;
    }
    for (size_t k = 1; k < length; ++k) {
      if (i + k >= size)
        return i;
      unsigned char next = static_cast<unsigned char>(text[i + k]);
      unsigned char lo = k == 1 ? low : 0x80, hi = k == 1 ? high : 0xBF;
      if (next < lo || next > hi)
        return i;
    }
    i += length;
  }
  return std::nullopt;
}

namespace {

StatusOr<int64_t> lookUp(const Tokenizer &tokenizer, std::string_view content,
                         const char *purpose) {
  std::optional<int64_t> id = tokenizer.tokenId(content);
  if (!id)
    return COMPRESSA_ERROR(NotFound,
                           "the tokenizer has no token '%.*s' (%s)",
                           static_cast<int>(content.size()), content.data(),
                           purpose);
  if (*id < 0 || *id >= tokenizer.vocabSize())
    return COMPRESSA_ERROR(Internal,
                           "the tokenizer gives token '%.*s' the id %lld, "
                           "outside its vocabulary of %lld",
                           static_cast<int>(content.size()), content.data(),
                           static_cast<long long>(*id),
                           static_cast<long long>(tokenizer.vocabSize()));
  return *id;
}

Status checkUtf8(std::string_view text, const char *what, size_t index,
                 ChatRole role) {
  if (std::optional<size_t> offset = findInvalidUtf8(text))
    return COMPRESSA_ERROR(InvalidArgument,
                           "message %zu (%s): the %s is not valid UTF-8 "
                           "(byte offset %zu)",
                           index, chatRoleName(role), what, *offset);
  return okStatus();
}

} // namespace

StatusOr<std::vector<int64_t>> encodeCompletion(const Tokenizer &tokenizer,
                                                std::string_view text) {
  if (std::optional<size_t> offset = findInvalidUtf8(text))
    return COMPRESSA_ERROR(InvalidArgument,
                           "the prompt is not valid UTF-8 (byte offset %zu)",
                           *offset);
  COMPRESSA_ASSIGN_OR_RETURN(
      int64_t bos, lookUp(tokenizer, kBosToken, "the prompt starts with it"));
  std::vector<int64_t> ids{bos};
  if (!text.empty()) {
    COMPRESSA_ASSIGN_OR_RETURN(std::vector<int64_t> body,
                               tokenizer.encode(text));
    ids.insert(ids.end(), body.begin(), body.end());
  }
  return ids;
}

StatusOr<ChatEncoder> ChatEncoder::create(const Tokenizer &tokenizer) {
  const char *purpose = "the DeepSeek-V4 chat format needs it";
  ChatSpecialTokens ids;
  COMPRESSA_ASSIGN_OR_RETURN(ids.bos, lookUp(tokenizer, kBosToken, purpose));
  COMPRESSA_ASSIGN_OR_RETURN(ids.eos, lookUp(tokenizer, kEosToken, purpose));
  COMPRESSA_ASSIGN_OR_RETURN(ids.user, lookUp(tokenizer, kUserToken, purpose));
  COMPRESSA_ASSIGN_OR_RETURN(ids.assistant,
                             lookUp(tokenizer, kAssistantToken, purpose));
  COMPRESSA_ASSIGN_OR_RETURN(ids.thinkStart,
                             lookUp(tokenizer, kThinkStartToken, purpose));
  COMPRESSA_ASSIGN_OR_RETURN(ids.thinkEnd,
                             lookUp(tokenizer, kThinkEndToken, purpose));
  return ChatEncoder(tokenizer, ids);
}

StatusOr<std::vector<ChatEncoder::Piece>>
ChatEncoder::pieces(const std::vector<ChatMessage> &messages,
                    const ChatEncodingOptions &options) const {
  bool thinking = options.mode == ChatMode::Thinking;
  // The last user message: the reply to it is the one that thinks.
  size_t count = messages.size();
  std::optional<size_t> lastUser;
  for (size_t i = 0; i < count; ++i)
    if (messages[i].role == ChatRole::User)
      lastUser = i;

  std::vector<Piece> out;
  auto special = [&](int64_t id, std::string_view content) {
    out.push_back({id, content});
  };
  auto text = [&](std::string_view content) {
    if (!content.empty())
      out.push_back({-1, content});
  };
  special(ids.bos, kBosToken);
  for (size_t i = 0; i < count; ++i) {
    const ChatMessage &message = messages[i];
    COMPRESSA_RETURN_IF_ERROR(
        checkUtf8(message.content, "content", i, message.role));
    if (message.role != ChatRole::Assistant && !message.reasoning.empty())
      return COMPRESSA_ERROR(InvalidArgument,
                             "message %zu (%s) has reasoning; only assistant "
                             "messages have one",
                             i, chatRoleName(message.role));
    switch (message.role) {
    case ChatRole::System:
      text(message.content);
      break;
    case ChatRole::User: {
      special(ids.user, kUserToken);
      text(message.content);
      // <｜Assistant｜> opens the reply: when one follows, or when this
      // message ends the conversation (the prompt of the next reply).
      bool replyFollows =
          i + 1 == count || messages[i + 1].role == ChatRole::Assistant;
      if (!replyFollows)
        break;
      special(ids.assistant, kAssistantToken);
      bool opensReasoning =
          thinking && (!options.dropThinking || (lastUser && i >= *lastUser));
      if (opensReasoning)
        special(ids.thinkStart, kThinkStartToken);
      else
        special(ids.thinkEnd, kThinkEndToken);
      break;
    }
    case ChatRole::Assistant: {
      COMPRESSA_RETURN_IF_ERROR(
          checkUtf8(message.reasoning, "reasoning", i, message.role));
      bool keepsReasoning =
          thinking && (!options.dropThinking || !lastUser || i > *lastUser);
      if (keepsReasoning) {
        text(message.reasoning);
        special(ids.thinkEnd, kThinkEndToken);
      }
      text(message.content);
      special(ids.eos, kEosToken);
      break;
    }
    }
  }
  return out;
}

StatusOr<std::vector<int64_t>>
ChatEncoder::encode(const std::vector<ChatMessage> &messages,
                    const ChatEncodingOptions &options) const {
  COMPRESSA_ASSIGN_OR_RETURN(std::vector<Piece> parts,
                             pieces(messages, options));
  std::vector<int64_t> out;
  for (const Piece &piece : parts) {
    if (piece.special >= 0) {
      out.push_back(piece.special);
      continue;
    }
    COMPRESSA_ASSIGN_OR_RETURN(std::vector<int64_t> body,
                               tok->encode(piece.content));
    out.insert(out.end(), body.begin(), body.end());
  }
  return out;
}

StatusOr<std::string>
ChatEncoder::render(const std::vector<ChatMessage> &messages,
                    const ChatEncodingOptions &options) const {
  COMPRESSA_ASSIGN_OR_RETURN(std::vector<Piece> parts,
                             pieces(messages, options));
  std::string out;
  for (const Piece &piece : parts)
    out.append(piece.content);
  return out;
}

} // namespace compressa
