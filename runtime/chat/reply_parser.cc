// SPDX-License-Identifier: Apache-2.0
// Splitting a DeepSeek-V4 reply while it streams (reply_parser.h has the
// format and the rules).
#include "runtime/chat/reply_parser.h"

#include "runtime/chat/chat_encoding.h"
#include "runtime/chat/json_text.h"

#include <algorithm>

namespace compressa {

namespace {

constexpr std::string_view kDsml = "｜DSML｜";
constexpr std::string_view kDsmlOpen = "<｜DSML｜";
constexpr std::string_view kDsmlOpenAfterBlank = "\n\n<｜DSML｜";
constexpr std::string_view kBlockName = "tool_calls>";
constexpr std::string_view kBlockClose = "</｜DSML｜tool_calls>";
constexpr std::string_view kInvokeOpen = "<｜DSML｜invoke";
constexpr std::string_view kInvokeClose = "</｜DSML｜invoke>";
constexpr std::string_view kParameterOpen = "<｜DSML｜parameter";
constexpr std::string_view kParameterClose = "</｜DSML｜parameter>";

bool isSpace(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

size_t skipSpaces(std::string_view text, size_t pos) {
  while (pos < text.size() && isSpace(text[pos]))
    ++pos;
  return pos;
}

bool startsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

/// True when `text` is a proper prefix of `marker` (more text could make it
/// the marker).
bool couldBecome(std::string_view text, std::string_view marker) {
  return text.size() < marker.size() && startsWith(marker, text);
}

/// The length of the longest suffix of `text` that is a proper prefix of one
/// of `markers`.
size_t heldBackLength(std::string_view text,
                      const std::vector<std::string_view> &markers) {
  size_t longest = 0;
  for (std::string_view marker : markers) {
    size_t limit = std::min(text.size(), marker.size() - 1);
    for (size_t k = limit; k > longest; --k)
      if (startsWith(marker, text.substr(text.size() - k))) {
        longest = k;
        break;
      }
  }
  return longest;
}

/// Reads `name="VALUE"` (after optional spaces) from `text` at `pos`; the
/// value runs to the next quote, as the reference's non-greedy match does.
bool readAttribute(std::string_view text, size_t &pos, std::string_view name,
                   std::string &value) {
  size_t at = skipSpaces(text, pos);
  if (!startsWith(text.substr(at), name) ||
      !startsWith(text.substr(at + name.size()), "=\""))
    return false;
  size_t start = at + name.size() + 2;
  size_t end = text.find('"', start);
  if (end == std::string_view::npos)
    return false;
  value.assign(text.substr(start, end - start));
  pos = end + 1;
  return true;
}

std::string quote(std::string_view text) {
  return "'" + printable(text, 60) + "'";
}

} // namespace

ReplyParser::ReplyParser(ReplyParserOptions options)
    : options(std::move(options)),
      state(this->options.thinking ? State::Reasoning : State::Content) {}

ReplyDelta ReplyParser::feed(std::string_view piece) {
  ReplyDelta delta;
  if (ended())
    return delta;
  pending.append(piece);
  run(delta, /*final=*/false);
  return delta;
}

ReplyDelta ReplyParser::finish() {
  ReplyDelta delta;
  if (ended())
    return delta;
  run(delta, /*final=*/true);
  if (state == State::ToolBlock && failure.ok())
    fail("the reply ended inside the tool-call block (no " +
         std::string(kBlockClose) + ")");
  return delta;
}

void ReplyParser::fail(std::string message) {
  if (failure.ok())
    failure = Status(StatusCode::InvalidArgument,
                     "malformed tool-call markup in the reply: " + message);
  pending.clear();
}

void ReplyParser::emitText(ReplyDelta &delta, std::string_view text) {
  if (state == State::Content && skipSpace) {
    size_t start = skipSpaces(text, 0);
    text.remove_prefix(start);
    if (text.empty())
      return;
    skipSpace = false;
  }
  if (text.empty())
    return;
  if (state == State::Reasoning) {
    delta.reasoning.append(text);
    allReasoning.append(text);
  } else {
    delta.content.append(text);
    allContent.append(text);
  }
}

void ReplyParser::run(ReplyDelta &delta, bool final) {
  while (failure.ok()) {
    bool progressed = false;
    switch (state) {
    case State::Reasoning:
    case State::Content:
      progressed = runText(delta, final);
      break;
    case State::ToolBlock:
      progressed = runToolBlock(delta);
      break;
    case State::Ended:
      pending.clear();
      return;
    }
    if (!progressed)
      return;
  }
}

bool ReplyParser::runText(ReplyDelta &delta, bool final) {
  std::vector<std::string_view> markers = {kDsmlOpenAfterBlank, kDsmlOpen,
                                           kEosToken};
  if (state == State::Reasoning)
    markers.push_back(kThinkEndToken);
  // The earliest marker wins; at one position the longer (the one with the
  // blank line before the DSML tag) does.
  size_t best = std::string::npos;
  std::string_view found;
  for (std::string_view marker : markers) {
    size_t at = pending.find(marker);
    if (at != std::string::npos &&
        (at < best || (at == best && marker.size() > found.size()))) {
      best = at;
      found = marker;
    }
  }
  if (best == std::string::npos) {
    size_t hold = final ? 0 : heldBackLength(pending, markers);
    emitText(delta, std::string_view(pending).substr(0, pending.size() - hold));
    pending.erase(0, pending.size() - hold);
    return false;
  }
  emitText(delta, std::string_view(pending).substr(0, best));
  pending.erase(0, best + found.size());
  if (found == kEosToken) {
    state = State::Ended;
  } else if (found == kThinkEndToken) {
    state = State::Content;
  } else {
    state = State::ToolBlock;
    blockOpened = false;
  }
  return true;
}

bool ReplyParser::runToolBlock(ReplyDelta &delta) {
  std::string_view text = pending;
  if (!blockOpened) {
    // pending starts right after "<｜DSML｜".
    if (couldBecome(text, kBlockName))
      return false;
    if (!startsWith(text, kBlockName)) {
      fail("expected <" + std::string(kDsml) + "tool_calls>, found " +
           quote(std::string(kDsmlOpen) + std::string(text.substr(0, 40))));
      return false;
    }
    blockOpened = true;
    pending.erase(0, kBlockName.size());
    return true;
  }
  size_t at = skipSpaces(text, 0);
  std::string_view rest = text.substr(at);
  if (rest.empty())
    return false;
  if (startsWith(rest, kBlockClose)) {
    pending.erase(0, at + kBlockClose.size());
    state = State::Content;
    skipSpace = true;
    return true;
  }
  if (couldBecome(rest, kBlockClose) || couldBecome(rest, kInvokeOpen))
    return false;
  if (!startsWith(rest, kInvokeOpen)) {
    size_t eos = rest.find(kEosToken);
    fail(std::string(eos == 0 ? "the reply ended inside the tool-call block; "
                              : "") +
         "expected " + std::string(kInvokeOpen) + " or " +
         std::string(kBlockClose) + ", found " + quote(rest.substr(0, 40)));
    return false;
  }
  // A long call arrives in many pieces: search only the text that is new
  // since the last search (and a marker's length before it).
  size_t from = searchFrom > at ? searchFrom - at : 0;
  size_t close = rest.find(kInvokeClose, from);
  size_t eos = rest.find(kEosToken, from);
  if (eos != std::string_view::npos &&
      (close == std::string_view::npos || eos < close)) {
    fail("the reply ended inside a " + std::string(kInvokeOpen) + "> element");
    return false;
  }
  if (close == std::string_view::npos) {
    size_t overlap = std::max(kInvokeClose.size(), kEosToken.size()) - 1;
    searchFrom = pending.size() > overlap ? pending.size() - overlap : 0;
    return false;
  }
  searchFrom = 0;

  // One call: <｜DSML｜invoke name="NAME"> (parameters) </｜DSML｜invoke>.
  std::string_view invoke = rest.substr(0, close);
  size_t pos = kInvokeOpen.size();
  ToolCall call;
  call.index = allCalls.size();
  call.id = options.toolCallIdPrefix + std::to_string(call.index);
  if (pos >= invoke.size() || invoke[pos] != ' ' ||
      !readAttribute(invoke, pos, "name", call.name) ||
      !startsWith(invoke.substr(pos), ">")) {
    fail("expected " + std::string(kInvokeOpen) +
         " name=\"NAME\">, found " + quote(invoke.substr(0, 60)));
    return false;
  }
  ++pos;
  std::vector<std::string> keys;
  std::string arguments = "{";
  while (true) {
    pos = skipSpaces(invoke, pos);
    if (pos >= invoke.size())
      break;
    std::string_view element = invoke.substr(pos);
    std::string key, isString;
    size_t attr = kParameterOpen.size();
    if (!startsWith(element, kParameterOpen) || attr >= element.size() ||
        element[attr] != ' ' || !readAttribute(element, attr, "name", key) ||
        !readAttribute(element, attr, "string", isString) ||
        (isString != "true" && isString != "false") ||
        !startsWith(element.substr(attr), ">")) {
      fail("tool call '" + printable(call.name, 60) + "': expected " +
           std::string(kParameterOpen) +
           " name=\"KEY\" string=\"true|false\">, found " +
           quote(element.substr(0, 60)));
      return false;
    }
    ++attr;
    size_t end = element.find(kParameterClose, attr);
    if (end == std::string_view::npos) {
      fail("tool call '" + printable(call.name, 60) + "': parameter '" +
           printable(key, 60) + "' has no " + std::string(kParameterClose));
      return false;
    }
    std::string_view value = element.substr(attr, end - attr);
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
      fail("tool call '" + printable(call.name, 60) + "': parameter '" +
           printable(key, 60) + "' is given twice");
      return false;
    }
    // The call becomes JSON: its text must be UTF-8 (a decoder that
    // replaces broken bytes never gives anything else).
    for (std::string_view text : {std::string_view(call.name),
                                  std::string_view(key), value}) {
      if (findInvalidUtf8(text)) {
        fail("tool call '" + printable(call.name, 60) + "': parameter '" +
             printable(key, 60) + "': invalid UTF-8");
        return false;
      }
    }
    if (isString == "false" && !isJsonText(value)) {
      fail("tool call '" + printable(call.name, 60) + "': parameter '" +
           printable(key, 60) + "' has string=\"false\" but its value " +
           quote(value) + " is not JSON");
      return false;
    }
    if (!keys.empty())
      arguments += ", ";
    keys.push_back(key);
    appendPythonJsonString(key, arguments);
    arguments += ": ";
    if (isString == "true")
      appendPythonJsonString(value, arguments);
    else
      arguments.append(value);
    pos += end + kParameterClose.size();
  }
  arguments += "}";
  call.arguments = std::move(arguments);
  pending.erase(0, at + close + kInvokeClose.size());
  allCalls.push_back(call);
  delta.toolCalls.push_back(std::move(call));
  return true;
}

} // namespace compressa
