// SPDX-License-Identifier: Apache-2.0
// Tests of the DeepSeek-V4 conversation format. Most use a small fake
// tokenizer whose ids can be checked by hand: the special tokens are
// 0 BOS, 1 EOS, 2 <｜User｜>, 3 <｜Assistant｜>, 4 <think>, 5 </think>, and
// every other byte b of the text is the id 100 + b. The last tests run the
// real tokenizer models/tokenizers/tiny-768.json when it is present.
#include "runtime/chat/chat_encoding.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace compressa {
namespace {

constexpr int64_t kBos = 0, kEos = 1, kUser = 2, kAssistant = 3, kThink = 4,
                  kUnthink = 5;

/// Special tokens matched first, then one id per byte.
class FakeTokenizer : public Tokenizer {
public:
  explicit FakeTokenizer(std::vector<std::string> missing = {}) {
    std::vector<std::string_view> all = {kBosToken,       kEosToken,
                                         kUserToken,      kAssistantToken,
                                         kThinkStartToken, kThinkEndToken};
    for (size_t id = 0; id < all.size(); ++id) {
      std::string content(all[id]);
      bool drop = false;
      for (const std::string &m : missing)
        drop |= m == content;
      if (!drop)
        specials[content] = static_cast<int64_t>(id);
    }
  }

  StatusOr<std::vector<int64_t>> encode(std::string_view text) const override {
    ++encodeCalls;
    std::vector<int64_t> ids;
    size_t i = 0;
    while (i < text.size()) {
      bool matched = false;
      for (const auto &[content, id] : specials) {
        if (text.compare(i, content.size(), content) == 0) {
          ids.push_back(id);
          i += content.size();
          matched = true;
          break;
        }
      }
      if (!matched)
        ids.push_back(100 + static_cast<unsigned char>(text[i++]));
    }
    return ids;
  }
  StatusOr<std::string> decode(const int64_t *ids,
                               size_t count) const override {
    std::string out;
    for (size_t i = 0; i < count; ++i) {
      COMPRESSA_ASSIGN_OR_RETURN(std::string bytes, tokenBytes(ids[i]));
      out += bytes;
    }
    return out;
  }
  StatusOr<std::string> tokenBytes(int64_t id) const override {
    for (const auto &[content, special] : specials)
      if (special == id)
        return content;
    if (id >= 100 && id < 356)
      return std::string(1, static_cast<char>(id - 100));
    return COMPRESSA_ERROR(OutOfRange, "id %lld", static_cast<long long>(id));
  }
  std::optional<int64_t> tokenId(std::string_view content) const override {
    auto it = specials.find(std::string(content));
    if (it == specials.end())
      return std::nullopt;
    return it->second;
  }
  int64_t vocabSize() const override { return 356; }

  mutable int encodeCalls = 0;

private:
  std::map<std::string, int64_t> specials;
};

/// The fake ids of `text`'s bytes.
std::vector<int64_t> bytes(std::string_view text) {
  std::vector<int64_t> ids;
  for (char c : text)
    ids.push_back(100 + static_cast<unsigned char>(c));
  return ids;
}

/// Concatenates id lists.
std::vector<int64_t> cat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const std::vector<int64_t> &part : parts)
    out.insert(out.end(), part.begin(), part.end());
  return out;
}

ChatMessage system(std::string text) {
  return {ChatRole::System, std::move(text), ""};
}
ChatMessage user(std::string text) {
  return {ChatRole::User, std::move(text), ""};
}
ChatMessage assistant(std::string answer, std::string reasoning = "") {
  return {ChatRole::Assistant, std::move(answer), std::move(reasoning)};
}

const ChatEncodingOptions kChat{ChatMode::Chat, true};
const ChatEncodingOptions kThinking{ChatMode::Thinking, true};
const ChatEncodingOptions kThinkingKeep{ChatMode::Thinking, false};

class ChatEncodingTest : public ::testing::Test {
protected:
  void SetUp() override {
    StatusOr<ChatEncoder> created = ChatEncoder::create(tokenizer);
    ASSERT_TRUE(created.ok()) << created.status().toString();
    encoder.emplace(std::move(created).value());
  }

  std::vector<int64_t> ids(const std::vector<ChatMessage> &messages,
                           const ChatEncodingOptions &options) {
    StatusOr<std::vector<int64_t>> out = encoder->encode(messages, options);
    EXPECT_TRUE(out.ok()) << out.status().toString();
    return out.ok() ? *out : std::vector<int64_t>{-99};
  }
  std::string text(const std::vector<ChatMessage> &messages,
                   const ChatEncodingOptions &options) {
    StatusOr<std::string> out = encoder->render(messages, options);
    EXPECT_TRUE(out.ok()) << out.status().toString();
    return out.ok() ? *out : "<error>";
  }

  FakeTokenizer tokenizer;
  std::optional<ChatEncoder> encoder;
};

TEST_F(ChatEncodingTest, SpecialTokensComeFromTheTokenizer) {
  const ChatSpecialTokens &special = encoder->specialTokens();
  EXPECT_EQ(special.bos, kBos);
  EXPECT_EQ(special.eos, kEos);
  EXPECT_EQ(special.user, kUser);
  EXPECT_EQ(special.assistant, kAssistant);
  EXPECT_EQ(special.thinkStart, kThink);
  EXPECT_EQ(special.thinkEnd, kUnthink);
}

TEST_F(ChatEncodingTest, FirstTurnChatMode) {
  // BOS <｜User｜> H i <｜Assistant｜> </think>
  EXPECT_EQ(ids({user("Hi")}, kChat),
            (std::vector<int64_t>{0, 2, 172, 205, 3, 5}));
  EXPECT_EQ(text({user("Hi")}, kChat),
            "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜></think>");
}

TEST_F(ChatEncodingTest, SpecExampleRendersAsTheSpecSays) {
  // spec §6: <｜begin▁of▁sentence｜><｜User｜>Hello, 世界<｜Assistant｜></think>
  EXPECT_EQ(text({user("Hello, 世界")}, kChat),
            "<｜begin▁of▁sentence｜><｜User｜>Hello, "
            "世界<｜Assistant｜></think>");
  EXPECT_EQ(ids({user("Hello, 世界")}, kChat),
            cat({{kBos, kUser}, bytes("Hello, 世界"), {kAssistant, kUnthink}}));
}

TEST_F(ChatEncodingTest, FirstTurnThinkingModeOpensReasoning) {
  // BOS S <｜User｜> H i <｜Assistant｜> <think>
  EXPECT_EQ(ids({system("S"), user("Hi")}, kThinking),
            (std::vector<int64_t>{0, 183, 2, 172, 205, 3, 4}));
  EXPECT_EQ(text({system("S"), user("Hi")}, kThinking),
            "<｜begin▁of▁sentence｜>S<｜User｜>Hi<｜Assistant｜><think>");
}

TEST_F(ChatEncodingTest, SystemPromptFollowsBos) {
  EXPECT_EQ(ids({system("Be brief."), user("Q")}, kChat),
            cat({{kBos}, bytes("Be brief."), {kUser}, bytes("Q"),
                 {kAssistant, kUnthink}}));
}

TEST_F(ChatEncodingTest, ChatModeSecondTurn) {
  // An earlier reply renders as {answer} EOS after the </think> of its
  // turn; a reasoning given in chat mode is not rendered.
  std::vector<ChatMessage> conversation = {user("a"), assistant("B", "r"),
                                           user("c")};
  EXPECT_EQ(ids(conversation, kChat),
            (std::vector<int64_t>{0, 2, 197, 3, 5, 166, 1, 2, 199, 3, 5}));
  EXPECT_EQ(text(conversation, kChat),
            "<｜begin▁of▁sentence｜><｜User｜>a<｜Assistant｜></think>B"
            "<｜end▁of▁sentence｜><｜User｜>c<｜Assistant｜></think>");
}

TEST_F(ChatEncodingTest, ThinkingModeDropsEarlierReasoning) {
  std::vector<ChatMessage> conversation = {
      system("S"), user("a"), assistant("B", "why"), user("c")};
  // BOS S <User> a <Assistant> </think> B EOS <User> c <Assistant> <think>
  EXPECT_EQ(ids(conversation, kThinking),
            (std::vector<int64_t>{0, 183, 2, 197, 3, 5, 166, 1, 2, 199, 3, 4}));
  EXPECT_EQ(text(conversation, kThinking),
            "<｜begin▁of▁sentence｜>S<｜User｜>a<｜Assistant｜></think>B"
            "<｜end▁of▁sentence｜><｜User｜>c<｜Assistant｜><think>");
}

TEST_F(ChatEncodingTest, ThinkingModeKeepsReasoningWithoutDrop) {
  std::vector<ChatMessage> conversation = {
      system("S"), user("a"), assistant("B", "why"), user("c")};
  // ... <Assistant> <think> w h y </think> B EOS ... <Assistant> <think>
  EXPECT_EQ(ids(conversation, kThinkingKeep),
            cat({{kBos}, bytes("S"), {kUser}, bytes("a"), {kAssistant, kThink},
                 bytes("why"), {kUnthink}, bytes("B"), {kEos, kUser},
                 bytes("c"), {kAssistant, kThink}}));
  EXPECT_EQ(text(conversation, kThinkingKeep),
            "<｜begin▁of▁sentence｜>S<｜User｜>a<｜Assistant｜><think>why"
            "</think>B<｜end▁of▁sentence｜><｜User｜>c<｜Assistant｜><think>");
}

TEST_F(ChatEncodingTest, ThinkingModeReplyToLastUserKeepsItsReasoning) {
  // The whole conversation after a reply: the reasoning of the reply to the
  // last user message stays, in both drop settings.
  std::vector<ChatMessage> conversation = {user("a"), assistant("B", "r")};
  std::vector<int64_t> expected = {0, 2, 197, 3, 4, 214, 5, 166, 1};
  EXPECT_EQ(ids(conversation, kThinking), expected);
  EXPECT_EQ(ids(conversation, kThinkingKeep), expected);
  // In chat mode the same conversation has no reasoning.
  EXPECT_EQ(ids(conversation, kChat),
            (std::vector<int64_t>{0, 2, 197, 3, 5, 166, 1}));
}

TEST_F(ChatEncodingTest, ReplyPromptExtendsToTheFullTurn) {
  // In thinking mode the prompt of a reply followed by the generated tokens
  // (reasoning, </think>, answer, EOS) is the rendered conversation.
  std::vector<int64_t> prompt = ids({user("a")}, kThinking);
  std::vector<int64_t> generated = cat({bytes("r"), {kUnthink}, bytes("B"),
                                        {kEos}});
  EXPECT_EQ(cat({prompt, generated}),
            ids({user("a"), assistant("B", "r")}, kThinking));
  // The same in chat mode: answer, EOS.
  EXPECT_EQ(cat({ids({user("a")}, kChat), bytes("B"), {kEos}}),
            ids({user("a"), assistant("B")}, kChat));
}

TEST_F(ChatEncodingTest, EmptyAnswerAndEmptyUserMessage) {
  EXPECT_EQ(ids({user(""), assistant("")}, kChat),
            (std::vector<int64_t>{0, 2, 3, 5, 1}));
  // Empty pieces never reach the tokenizer.
  tokenizer.encodeCalls = 0;
  EXPECT_EQ(ids({user(""), assistant("", "")}, kThinking),
            (std::vector<int64_t>{0, 2, 3, 4, 5, 1}));
  EXPECT_EQ(tokenizer.encodeCalls, 0);
}

TEST_F(ChatEncodingTest, ConsecutiveUserMessagesShareOneReply) {
  // Like the reference: <｜Assistant｜> only after the user message that a
  // reply follows or that ends the conversation.
  EXPECT_EQ(ids({user("a"), user("c")}, kChat),
            (std::vector<int64_t>{0, 2, 197, 2, 199, 3, 5}));
}

TEST_F(ChatEncodingTest, EmptyConversationIsBos) {
  EXPECT_EQ(ids({}, kChat), (std::vector<int64_t>{0}));
  EXPECT_EQ(ids({system("S")}, kThinking), (std::vector<int64_t>{0, 183}));
}

TEST_F(ChatEncodingTest, SpecialTokenTextInAMessageIsTheToken) {
  // The reference tokenizes the rendered string, so a special token written
  // in a message is that token; encoding piece by piece keeps that.
  EXPECT_EQ(ids({user("x</think>y")}, kChat),
            (std::vector<int64_t>{0, 2, 220, 5, 221, 3, 5}));
}

TEST_F(ChatEncodingTest, InvalidUtf8NamesMessageAndOffset) {
  StatusOr<std::vector<int64_t>> out =
      encoder->encode({system("ok"), user("ab\xC3(")}, kChat);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::InvalidArgument);
  EXPECT_EQ(out.status().message(),
            "message 1 (user): the content is not valid UTF-8 (byte offset "
            "2)");
  StatusOr<std::string> rendered =
      encoder->render({user("a"), assistant("b", "\xFFx")}, kThinkingKeep);
  ASSERT_FALSE(rendered.ok());
  EXPECT_EQ(rendered.status().message(),
            "message 1 (assistant): the reasoning is not valid UTF-8 (byte "
            "offset 0)");
}

TEST_F(ChatEncodingTest, ReasoningOnlyOnAssistantMessages) {
  StatusOr<std::vector<int64_t>> out =
      encoder->encode({{ChatRole::User, "q", "thought"}}, kThinking);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(),
            "message 0 (user) has reasoning; only assistant messages have one");
}

TEST(ChatEncoderCreate, MissingSpecialTokenIsNamed) {
  for (std::string_view missing :
       {kBosToken, kEosToken, kUserToken, kAssistantToken, kThinkStartToken,
        kThinkEndToken}) {
    FakeTokenizer tokenizer({std::string(missing)});
    StatusOr<ChatEncoder> encoder = ChatEncoder::create(tokenizer);
    ASSERT_FALSE(encoder.ok()) << missing;
    EXPECT_EQ(encoder.status().code(), StatusCode::NotFound);
    EXPECT_EQ(encoder.status().message(),
              "the tokenizer has no token '" + std::string(missing) +
                  "' (the DeepSeek-V4 chat format needs it)");
  }
}

TEST(EncodeCompletion, BosThenText) {
  FakeTokenizer tokenizer;
  StatusOr<std::vector<int64_t>> ids = encodeCompletion(tokenizer, "Hi!");
  ASSERT_TRUE(ids.ok()) << ids.status().toString();
  EXPECT_EQ(*ids, (std::vector<int64_t>{0, 172, 205, 133}));
  StatusOr<std::vector<int64_t>> empty = encodeCompletion(tokenizer, "");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, (std::vector<int64_t>{0}));
}

TEST(EncodeCompletion, Errors) {
  FakeTokenizer tokenizer;
  StatusOr<std::vector<int64_t>> bad =
      encodeCompletion(tokenizer, "caf\xC3\xA9 \xE2\x82");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "the prompt is not valid UTF-8 (byte offset 6)");
  // Completion needs only BOS: the chat tokens may be missing.
  FakeTokenizer noChat({std::string(kUserToken), std::string(kThinkEndToken)});
  EXPECT_TRUE(encodeCompletion(noChat, "x").ok());
  FakeTokenizer noBos({std::string(kBosToken)});
  StatusOr<std::vector<int64_t>> missing = encodeCompletion(noBos, "x");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(),
            "the tokenizer has no token '<｜begin▁of▁sentence｜>' (the prompt "
            "starts with it)");
}

TEST(FindInvalidUtf8, AcceptsValidText) {
  for (std::string_view text :
       {"", "plain ASCII", "\xC2\x80", "é", "世界", "\xEF\xBF\xBD", "😀",
        "\xF4\x8F\xBF\xBF", "\xED\x9F\xBF"})
    EXPECT_EQ(findInvalidUtf8(text), std::nullopt) << printable(text);
  EXPECT_EQ(findInvalidUtf8(std::string_view("a\0b", 3)), std::nullopt);
}

TEST(FindInvalidUtf8, NamesTheFirstBadByte) {
  struct Case {
    std::string_view text;
    size_t offset;
  };
  for (Case c : std::initializer_list<Case>{
           {"\x80", 0},                 // stray continuation byte
           {"ab\xC0\x80", 2},           // overlong 2-byte form
           {"\xC1\xBF", 0},             // overlong
           {"x\xE0\x80\x80", 1},        // overlong 3-byte form
           {"\xED\xA0\x80", 0},         // UTF-16 surrogate
           {"\xF0\x80\x80\x80", 0},     // overlong 4-byte form
           {"\xF4\x90\x80\x80", 0},     // above U+10FFFF
           {"\xF5\x80\x80\x80", 0},     // lead byte never valid
           {"\xFF", 0},
           {"ok\xE4\xB8", 2},           // truncated at the end
           {"\xE4\xB8(", 0},            // truncated by ASCII
           {"é\xC3", 2},
       })
    EXPECT_EQ(findInvalidUtf8(c.text), std::optional<size_t>(c.offset))
        << printable(c.text);
}

//===----------------------------------------------------------------------===//
// The real tokenizer
//===----------------------------------------------------------------------===//

#ifdef COMPRESSA_TINY_TOKENIZER
class TinyTokenizerTest : public ::testing::Test {
protected:
  void SetUp() override {
    if (!std::filesystem::exists(COMPRESSA_TINY_TOKENIZER))
      FAIL() << COMPRESSA_TINY_TOKENIZER << " is missing";
    StatusOr<std::unique_ptr<Tokenizer>> loaded =
        Tokenizer::fromFile(COMPRESSA_TINY_TOKENIZER);
    ASSERT_TRUE(loaded.ok()) << loaded.status().toString();
    tokenizer = std::move(loaded).value();
  }
  std::unique_ptr<Tokenizer> tokenizer;
};

TEST_F(TinyTokenizerTest, ChatIdsEqualTheTokensOfTheRenderedText) {
  StatusOr<ChatEncoder> encoder = ChatEncoder::create(*tokenizer);
  ASSERT_TRUE(encoder.ok()) << encoder.status().toString();
  EXPECT_EQ(encoder->specialTokens().bos, 0);
  EXPECT_EQ(encoder->specialTokens().eos, 1);
  std::vector<ChatMessage> conversation = {
      system("You are terse."), user("Hello, 世界"),
      assistant("Hi there.", "The user greets me."), user("What is 2+2?")};
  for (const ChatEncodingOptions &options : {kChat, kThinking, kThinkingKeep}) {
    StatusOr<std::vector<int64_t>> ids = encoder->encode(conversation, options);
    ASSERT_TRUE(ids.ok()) << ids.status().toString();
    StatusOr<std::string> rendered = encoder->render(conversation, options);
    ASSERT_TRUE(rendered.ok()) << rendered.status().toString();
    // The reference tokenizes the rendered string in one go.
    StatusOr<std::vector<int64_t>> whole = tokenizer->encode(*rendered);
    ASSERT_TRUE(whole.ok()) << whole.status().toString();
    EXPECT_EQ(*ids, *whole);
    // And decoding gives the rendered text back.
    StatusOr<std::string> decoded = tokenizer->decode(ids->data(), ids->size());
    ASSERT_TRUE(decoded.ok()) << decoded.status().toString();
    EXPECT_EQ(*decoded, *rendered);
  }
  // Hand-checked structure of the chat-mode prompt.
  StatusOr<std::vector<int64_t>> ids =
      encoder->encode({user("Hello")}, kChat);
  ASSERT_TRUE(ids.ok());
  const ChatSpecialTokens &s = encoder->specialTokens();
  StatusOr<std::vector<int64_t>> hello = tokenizer->encode("Hello");
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(*ids, cat({{s.bos, s.user}, *hello, {s.assistant, s.thinkEnd}}));
}

TEST_F(TinyTokenizerTest, CompletionIsBosThenTheText) {
  StatusOr<std::vector<int64_t>> ids =
      encodeCompletion(*tokenizer, "Once upon a time");
  ASSERT_TRUE(ids.ok()) << ids.status().toString();
  StatusOr<std::vector<int64_t>> body = tokenizer->encode("Once upon a time");
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(*ids, cat({{0}, *body}));
}
#endif

} // namespace
} // namespace compressa
