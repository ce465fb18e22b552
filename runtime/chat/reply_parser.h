//===- reply_parser.h - Split a DeepSeek-V4 reply while it streams -*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0
//
// A reply of DeepSeek-V4 is, after the prompt's <｜Assistant｜><think> or
// <｜Assistant｜></think> (chat_encoding.h):
//
//   [{reasoning}</think>]{content}[\n\n<｜DSML｜tool_calls>
//   <｜DSML｜invoke name="NAME">
//   <｜DSML｜parameter name="KEY" string="true|false">VALUE</｜DSML｜parameter>
//   ...
//   </｜DSML｜invoke>
//   ...
//   </｜DSML｜tool_calls>]<｜end▁of▁sentence｜>
//
// (the reasoning part only in thinking mode). ReplyParser is fed the decoded
// text as it is generated, in pieces of any size (special tokens decoded as
// their content), and returns what became certain: reasoning text, content
// text, and complete tool calls in OpenAI's form. It never lets markup into
// the content or the reasoning: text that could be the start of a marker
// (e.g. a piece ending in "\n\n<｜DS") is held back until the next piece
// decides, or finish() releases it as text.
//
// Tool calls become OpenAI tool calls {id, type:"function", function:{name,
// arguments}}: `arguments` is a JSON object text built as the reference
// decoder does, {"KEY": VALUE, ...}, where a string="true" value becomes a
// JSON string and a string="false" value must itself be JSON (checked). A
// call is returned as soon as its </｜DSML｜invoke> arrives.
//
// Malformed tool-call markup (a DSML tag other than the ones above, a bad
// attribute, a parameter given twice, a string="false" value that is not
// JSON, a block the reply ends inside) is an ERROR, not content: error()
// becomes non-OK with a message naming what was wrong, nothing of the markup
// reaches content, and everything fed afterwards is ignored. The text and the
// calls returned before it stay valid; the server reports the error (e.g. as
// an error object, or finish_reason "error" in a stream).
//
// Leniency beyond the reference (which accepts only the exact layout): any
// whitespace between the DSML elements; a tool-call block that starts without
// "\n\n" or inside the reasoning (the reasoning then ends); content after the
// block (whitespace right after it is dropped). The end-of-sentence text ends
// the reply: what follows it is ignored.
//
// Example (a server streaming one request):
//
//   ReplyParser parser({/*thinking=*/true, /*toolCallIdPrefix=*/"call_ab12_"});
//   for (each generated token) {
//     ReplyDelta delta = parser.feed(decodedTextOfToken);
//     if (!delta.reasoning.empty()) send({"reasoning_content": delta.reasoning});
//     if (!delta.content.empty())   send({"content": delta.content});
//     for (const ToolCall &call : delta.toolCalls)
//       send({"tool_calls": [{"index": call.index, "id": call.id,
//             "type": "function", "function": {"name": call.name,
//             "arguments": call.arguments}}]});
//     if (!parser.error().ok()) { report(parser.error()); break; }
//     if (parser.ended()) break;   // it saw <｜end▁of▁sentence｜>
//   }
//   ReplyDelta last = parser.finish();   // releases held-back text
//   // parser.reasoning(), parser.content(), parser.toolCalls(): the whole
//   // reply (for a non-streaming response); finish_reason "tool_calls" when
//   // toolCalls() is non-empty.
//
//===----------------------------------------------------------------------===//
#ifndef COMPRESSA_RUNTIME_CHAT_REPLY_PARSER_H
#define COMPRESSA_RUNTIME_CHAT_REPLY_PARSER_H

#include "runtime/base/status.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace compressa {

/// One tool call of a reply, in OpenAI's terms.
struct ToolCall {
  /// The call's position among the reply's calls (OpenAI's delta "index").
  size_t index = 0;
  /// toolCallIdPrefix followed by `index`.
  std::string id;
  std::string name;
  /// A JSON object, as text.
  std::string arguments;
};

/// What one feed() or finish() made certain; append it to the response.
struct ReplyDelta {
  std::string reasoning;
  std::string content;
  std::vector<ToolCall> toolCalls;

  bool empty() const {
    return reasoning.empty() && content.empty() && toolCalls.empty();
  }
};

struct ReplyParserOptions {
  /// The prompt ended with <think> (thinking mode): the reply starts with
  /// reasoning, up to </think>. Otherwise it starts with content.
  bool thinking = false;
  /// Tool call ids are this prefix followed by the call's index; make it
  /// unique per request (e.g. "call_<request id>_").
  std::string toolCallIdPrefix = "call_";
};

class ReplyParser {
public:
  explicit ReplyParser(ReplyParserOptions options = {});

  /// Feeds the next piece of decoded text.
  ReplyDelta feed(std::string_view piece);
  /// The reply ended (end of sentence, a stop, the token limit): returns the
  /// held-back text. Ending inside a tool-call block sets error().
  ReplyDelta finish();

  /// Everything returned so far.
  const std::string &reasoning() const { return allReasoning; }
  const std::string &content() const { return allContent; }
  const std::vector<ToolCall> &toolCalls() const { return allCalls; }
  /// OK, or why the tool-call markup was malformed.
  const Status &error() const { return failure; }
  /// The end-of-sentence text was seen (or an error stopped the parser).
  bool ended() const { return state == State::Ended || !failure.ok(); }

private:
  enum class State { Reasoning, Content, ToolBlock, Ended };

  void run(ReplyDelta &delta, bool final);
  /// Text states: emits what is certainly text, handles a marker.
  bool runText(ReplyDelta &delta, bool final);
  /// Tool block: parses complete elements; false when more text is needed.
  bool runToolBlock(ReplyDelta &delta);
  void fail(std::string message);
  void emitText(ReplyDelta &delta, std::string_view text);

  ReplyParserOptions options;
  State state;
  /// Fed but not yet decided.
  std::string pending;
  /// The tool block's opening tag was read.
  bool blockOpened = false;
  /// Tool block: the end of an element is not in pending before this.
  size_t searchFrom = 0;
  /// Drop whitespace at the start of the content after a tool-call block.
  bool skipSpace = false;
  std::string allReasoning, allContent;
  std::vector<ToolCall> allCalls;
  Status failure;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_CHAT_REPLY_PARSER_H
