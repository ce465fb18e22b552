#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Makes the checked-in tokenizer reference data, once, with the Hugging Face
`tokenizers` library (the reference; test-only, not a runtime dependency).

Run from the repository root (tokenizers==0.23.3, see scripts/install-deps.sh):

    python3 test/tokenizer/Inputs/make_reference.py

It writes, deterministically (seeded corpus and strings):
  test/tokenizer/Inputs/ref-a.json            a byte-level BPE (1000 ids) with
      DeepSeek-V3/V4's pre-tokenizer, chat special tokens, more added tokens
      (special and not, "normalized" true and false, overlapping) and a BOS
      TemplateProcessing post-processor (not applied: add_special_tokens=False)
  test/tokenizer/Inputs/hard-strings.jsonl    the strings, one JSON string a line
  test/tokenizer/Inputs/ref-a.encode.jsonl    their ids (tokenizer.encode(s,
      add_special_tokens=False).ids)
  test/tokenizer/Inputs/ref-a.decode.jsonl    decode(those ids,
      skip_special_tokens=False)
  test/tokenizer/Inputs/ref-a.pretokens.jsonl the pre-tokenizer's pieces
  test/tokenizer/Inputs/random-ids.jsonl      id sequences (random ids, byte
      tokens that make invalid UTF-8, special tokens) and
  test/tokenizer/Inputs/ref-a.random-ids.decode.jsonl  their decodings
  models/tokenizers/tiny-768.json, tiny-512.json  the tiny models' tokenizers:
      exactly 768 / 512 ids, ids 0..5 the DeepSeek-V4 chat tokens
  test/tokenizer/Inputs/tiny-768.encode.jsonl, tiny-512.encode.jsonl  their ids
      for the hard strings
test/tokenizer/reference.test checks compressa-tokenize against these files.
"""
import json
import os
import random
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokref  # noqa: E402
from tokenizers import AddedToken, Tokenizer  # noqa: E402

INPUTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(INPUTS, "..", "..", ".."))

# Added after training: overlapping and normalized/non-normalized tokens.
EXTRA_SPECIAL = ["<thinking>", "<｜place▁holder▁no▁1｜>", "<|endoftext|>"]
EXTRA_PLAIN = ["hello world", "ｆｏｏ", "zz<thi", " spaced "]

HANDWRITTEN = [
    "",
    " ",
    "  ",
    "\n",
    "\r\n",
    "\n\n\n",
    "a",
    "Hello, world!",
    "Hello, 世界",
    "<｜begin▁of▁sentence｜><｜User｜>Hello, 世界<｜Assistant｜></think>",
    "<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>What is 2+2?<｜Assistant｜><think>\nLet me add.\n</think>\n\n4<｜end▁of▁sentence｜>",
    "text<think>inner</think>text",
    "<thinking> vs <think> vs <thin vs <think",
    "<<think>>",
    "<｜User｜><｜User｜><｜User｜>",
    "x<｜end▁of▁sentence｜>y",
    "<｜end▁of▁sentence",
    "｜end▁of▁sentence｜>",
    "say hello world twice: hello worldhello world",
    "hello  world",
    "zz<think>",
    "azz<thinking>",
    "ｆｏｏｆｏｏ ｆｏｏbar",
    "a spaced b  spaced  c",
    "<|endoftext|><|endoftext|>",
    "The quick brown fox jumps over the lazy dog.",
    "It's 3:45 pm and we've got 1,234,567 items!",
    "I'm, you're, they'll, we'd, she's, it'S, DON'T",
    "0",
    "12",
    "123",
    "1234",
    "12345678901234567890",
    "3.14159 2.71828 -0.5 +7 1e-10 0xFF 0b1010",
    "١٢٣٤٥ ४५६७ ²³¹ ½¼¾ ⅠⅡⅢⅫ ①②③ 𝟘𝟙𝟚 〇一二",
    "abc123def4567ghi",
    "x²+y²=z²",
    "人工智能正在改变世界。",
    "深度求索DeepSeek发布了V4模型",
    "東京は日本の首都です。",
    "カタカナとひらがなと漢字",
    "ｱｲｳｴｵ halfwidth katakana",
    "ー〜ゝゞヽヾ・",
    "ゟ゠ヿ぀ゖ",
    "한국어 문장도 있습니다.",
    "Привет, мир!",
    "Γειά σου κόσμε!",
    "مرحبا بالعالم! اللغة العربية",
    "عَرَبِيٌّ مُشَكَّلٌ",
    "שלום עולם",
    "नमस्ते दुनिया! हिन्दी",
    "क्षत्रिय त्र ज्ञ",
    "ภาษาไทยไม่มีการเว้นวรรค",
    "Tiếng Việt có nhiều dấu: ắ ằ ẳ ẵ ặ",
    "e\u0301 a\u0308 o\u0323\u0302 n\u0303",
    "\u0301\u0301\u0301 leading marks",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dalgo",
    "😀",
    "😀😀😀",
    "👍🏽",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "❤️ ❤ ♥",
    "🇯🇵🇺🇸🇩🇪",
    "#️⃣ *️⃣ 1️⃣",
    "🫠🫨🩷🫩",
    "\U0001f9d1\u200d\U0001f4bb coding",
    "emoji at end 🎉",
    "🎉 emoji at start",
    "a\u00a0b",
    "\u00a0\u00a0\u00a0",
    "a\u200bb",
    "\u200b\u200b",
    "a\u200cb\u200dc",
    "\ufeffBOM at start",
    "a\u2028b\u2029c",
    "a\u0085b",
    "a\u180eb",
    "\u3000ideographic space",
    "a\u2009b\u202fc\u205fd",
    "\u1680ogham",
    "tab\there",
    "\t\t\t",
    "trailing spaces   ",
    "   leading spaces",
    " " * 40,
    " " * 40 + "x",
    "\n" * 10 + "x",
    "\r\n\r\n\r\n",
    " \r\n \r\n",
    "a\r\nb\rc\nd",
    "line1\nline2\n",
    "  \n  \n  x  \n",
    "\t \u00a0\u3000 \n",
    "!!!",
    "...",
    "?!?!",
    "'''",
    "\"quoted\"",
    "(parens) [brackets] {braces}",
    "a.b.c",
    ".hidden",
    ",comma",
    "-dash --double ---triple",
    "_underscore __dunder__",
    "@user #tag $money %pct ^caret &amp *star",
    "https://example.com/path?query=1&x=y#frag",
    "foo.bar@example.org",
    "C:\\Windows\\System32",
    "/usr/local/bin",
    "a->b => c <= d != e == f",
    "«quotes» “curly” ‘single’ „low“",
    "。、！？「」『』（）《》【】",
    "…—–",
    "§¶•·",
    "¡Hola! ¿Qué tal?",
    "€100 £50 ¥1000 ₹500 ₿0.01",
    "∑∞≤≥≈√∫∂",
    "→←↔⇒",
    "°C ℃ № ™ © ®",
    "def f(x):\n    return x**2  # square\n",
    "if (a && b) { return c || d; }",
    "<div class=\"a\">text</div>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "SELECT * FROM t WHERE x > 1;",
    "x = y + z; // comment",
    "    indented code",
    "\tindented with tab",
    "CamelCaseWord snake_case_word kebab-case-word",
    "ALLCAPS lowercase MiXeD",
    "ﬁ ﬀ ĳ ŉ ſ ẞ ǅ",
    "Straße Größe Äpfel",
    "naïve café résumé",
    "\x00",
    "a\x00b",
    "\x01\x02\x1b[0m\x7f",
    "\ue000 private use",
    "\U000f0000\U0010fffd",
    "\u0378 unassigned",
    "\U0001fffe noncharacter",
    "\U00010d40\U00010d41 Garay digits (Unicode 16)",
    "\U00010d4a\U00010d4b Garay letters",
    "\U000116d0\U000116d1 Myanmar Extended-C digits",
    "\U00011f50 Kawi digit",
    "\U0001e4f0 Nag Mundari digit",
    "\u1b4e\u1b4f Balinese punctuation",
    "\u0897 Arabic pepet",
    "\u0cf3 Kannada",
    "\u2427\u2428 control pictures",
    "\U0001cc00 legacy computing",
    "\U0001f6dc wireless",
    "\u1c89\u1c8a Cyrillic TJE",
    "\U00031350 CJK Ext H",
    "\U00020000\U0002a6d6 CJK Ext B",
    "\U000e0001\U000e0041 tags",
    "mixed 中文English日本語カタカナ123한국어",
    "数字123和汉字混合456",
    "a1b2c3",
    "version 1.2.3-beta+build.45",
    "2024-01-15T12:34:56Z",
    "+1 (555) 123-4567",
    "$1,234.56",
    "50% off!!!",
    "#1 best",
    "A" * 100,
    "ab" * 60,
    "😀" * 30,
    "中" * 50,
    "!" * 50,
    "1" * 50,
]


def main():
    corpus = tokref.training_corpus(seed=1, lines=4000)

    # ref-a: the main reference tokenizer.
    ref = tokref.train(corpus, 1000 - len(EXTRA_SPECIAL) - len(EXTRA_PLAIN),
                       tokref.CHAT_TOKENS)
    ref.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in EXTRA_SPECIAL])
    ref.add_tokens([AddedToken(t, special=False, normalized=True) for t in EXTRA_PLAIN])
    ref.post_processor = tokref.bos_template(ref)
    assert ref.get_vocab_size() == 1000, ref.get_vocab_size()
    ref_path = os.path.join(INPUTS, "ref-a.json")
    ref.save(ref_path, pretty=False)
    ref = Tokenizer.from_file(ref_path)

    specials = tokref.CHAT_TOKENS + EXTRA_SPECIAL + EXTRA_PLAIN
    strings = HANDWRITTEN + tokref.random_strings(seed=7, count=250, specials=specials)
    tokref.dump_lines(os.path.join(INPUTS, "hard-strings.jsonl"), strings)
    strings = tokref.load_lines(os.path.join(INPUTS, "hard-strings.jsonl"))

    encodings = [ref.encode(s, add_special_tokens=False).ids for s in strings]
    tokref.dump_lines(os.path.join(INPUTS, "ref-a.encode.jsonl"), encodings)
    tokref.dump_lines(os.path.join(INPUTS, "ref-a.decode.jsonl"),
                      [ref.decode(ids, skip_special_tokens=False) for ids in encodings])
    tokref.dump_lines(os.path.join(INPUTS, "ref-a.pretokens.jsonl"),
                      [tokref.pretokens(ref, s) for s in strings])

    # Id sequences to decode: random ids, byte tokens forming invalid UTF-8.
    rng = random.Random(11)
    vocab = ref.get_vocab()
    byte_id = {b: vocab[c] for b, c in tokref.bytes_to_unicode().items()}
    sequences = [[], [0], [1, 0], list(range(20))]
    for bad in [b"\xe2\x82A", b"\xf0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                b"\xc0\xaf", b"\xe2\x82", b"\xf0\x9f\x98", b"\xff\xfe", b"\x80",
                b"\xe4\xb8", b"a\xe4\xb8\xadb", b"\xf0\x9f\x98\x80\x80"]:
        sequences.append([byte_id[b] for b in bad])
        sequences.append([vocab["<think>"]] + [byte_id[b] for b in bad] + [vocab["hello world"]])
    for _ in range(120):
        sequences.append([rng.randrange(1000) for _ in range(rng.choice([1, 2, 5, 20, 60]))])
    tokref.dump_lines(os.path.join(INPUTS, "random-ids.jsonl"), sequences)
    tokref.dump_lines(os.path.join(INPUTS, "ref-a.random-ids.decode.jsonl"),
                      [ref.decode(ids, skip_special_tokens=False) for ids in sequences])

    # The tiny models' tokenizers.
    for size in (768, 512):
        tiny = tokref.train(corpus, size, tokref.CHAT_TOKENS)
        assert tiny.get_vocab_size() == size, (size, tiny.get_vocab_size())
        for i, t in enumerate(tokref.CHAT_TOKENS):
            assert tiny.token_to_id(t) == i, t
        path = os.path.join(ROOT, "models", "tokenizers", "tiny-%d.json" % size)
        tiny.save(path, pretty=False)
        tiny = Tokenizer.from_file(path)
        tokref.dump_lines(os.path.join(INPUTS, "tiny-%d.encode.jsonl" % size),
                          [tiny.encode(s, add_special_tokens=False).ids for s in strings])
    print("make_reference: %d strings, %d id sequences" % (len(strings), len(sequences)))


if __name__ == "__main__":
    main()
