# SPDX-License-Identifier: Apache-2.0
"""Shared pieces of the tokenizer reference scripts (make_reference.py,
live_check.py): the training corpus, the DeepSeek-V3/V4 pre-tokenizer, the
trainer, and string generators. Everything is deterministic (seeded).

The reference is the Hugging Face `tokenizers` library (test-only; see
scripts/install-deps.sh). Nothing here is used at run time.
"""
import json
import random

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models,
                        pre_tokenizers, processors, trainers)

# DeepSeek-V3/V4's three Split patterns, in order.
DEEPSEEK_PATTERNS = [
    r"\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
]

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
CHAT_TOKENS = [BOS, EOS, "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]

SEED_TEXT = """\
The quick brown fox jumps over the lazy dog. It's 3:45 pm and we've got 1,234,567 items to ship!
DeepSeek-V4 is a mixture-of-experts language model; its tokenizer is a byte-level BPE.
def encode(text: str) -> list[int]:
    return [ord(c) for c in text]  # TODO(someone): speed this up
if (x >= 10 && y != 0) { printf("%d\\n", x / y); } else { return -1; }
<html><body class="main"><p>Hello, world &amp; friends</p></body></html>
{"id": 42, "name": "Ada Lovelace", "tags": ["math", "poetry"], "score": 99.5}
SELECT name, COUNT(*) FROM users WHERE age > 21 GROUP BY name ORDER BY 2 DESC;
Prices rose 12.5% in 2023; the CEO said: "We'll do better in Q3 — promise."
人工智能正在改变世界。我们今天去北京大学参观，然后在天安门广场散步。
深度求索发布了新的语言模型，它可以理解中文、英文和代码。
東京は日本の首都です。私はラーメンが大好きで、毎日食べています。
カタカナのテキスト：コンピューター、インターネット、プログラミング。
ひらがなだけのぶんしょうもありますよ。きょうはいいてんきですね。
한국어 문장도 있습니다. 서울은 대한민국의 수도입니다.
Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.
Γειά σου κόσμε! Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.
مرحبا بالعالم! اللغة العربية جميلة جداً، وهي لغة القرآن الكريم.
שלום עולם! זוהי שורה בעברית עם מספרים 123 ו־456.
नमस्ते दुनिया! हिन्दी भाषा देवनागरी लिपि में लिखी जाती है।
ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ สวัสดีครับ
Tiếng Việt có nhiều dấu: ắ ằ ẳ ẵ ặ, và chữ đ.
Ça va? Où est la bibliothèque? Größe, Straße, Ärger, Öl, Übermut — naïve café.
Emoji: 😀 😃 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇯🇵 🫠 and more!!! 🎉🎉🎉
Math: ∑_{i=1}^{n} x_i² ≤ ∞, α + β = γ, √2 ≈ 1.41421356, ½ + ¼ = ¾.
Tabs\tand  double  spaces,   triple spaces, and trailing spaces   
Windows line endings\r\nare common\r\nin files.
Numbers: 0 1 12 123 1234 12345 123456 3.14159 2.71828 1e-10 0xFF 0b1010 ١٢٣ ४५६
URLs: https://example.com/path?query=1&x=y#frag and email foo.bar@example.org
"""

WORD_POOL_EXTRA = [
    "hello", "world", "token", "tokenizer", "model", "the", "of", "and", "to", "in",
    "is", "that", "for", "it", "with", "as", "was", "on", "be", "at", "by", "this",
    "数据", "模型", "学习", "日本語", "テスト", "こんにちは", "世界", "中国", "大学",
    "été", "naïve", "Straße", "данные", "модель", "λόγος", "اللغة", "भाषा",
    "return", "self", "import", "numpy", "torch", "def", "class", "None", "True",
]


def training_corpus(seed, lines):
    """The seed text plus `lines` lines of words drawn from it."""
    rng = random.Random(seed)
    words = SEED_TEXT.split() + WORD_POOL_EXTRA
    out = SEED_TEXT.splitlines(keepends=True) * 3
    seps = [" ", " ", " ", " ", ", ", ". ", "\n", "  ", "\t", " - ", "\r\n", "：", "，"]
    for _ in range(lines):
        n = rng.randint(3, 20)
        parts = []
        for _ in range(n):
            w = rng.choice(words)
            if rng.random() < 0.1:
                w = str(rng.randint(0, 10 ** rng.randint(1, 7)))
            parts.append(w)
            parts.append(rng.choice(seps))
        out.append("".join(parts) + "\n")
    return out


def deepseek_pre_tokenizer():
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False)
         for p in DEEPSEEK_PATTERNS]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def train(corpus, vocab_size, special_tokens, pre_tokenizer=None):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer or deepseek_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return tok


def bos_template(tok):
    """DeepSeek-V3's post-processor kind: BOS before the text (applied only
    with add_special_tokens=True, which DeepSeek does not use)."""
    bos_id = tok.token_to_id(BOS)
    return processors.TemplateProcessing(
        single=BOS + " $A", pair=BOS + " $A " + BOS + " $B",
        special_tokens=[(BOS, bos_id)])


_INVERSE = None


def byte_level_to_text(piece):
    """A ByteLevel-mapped pre-token back to its text."""
    global _INVERSE
    if _INVERSE is None:
        _INVERSE = {v: k for k, v in bytes_to_unicode().items()}
    return bytes(_INVERSE[c] for c in piece).decode("utf-8")


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def pretokens(tok, text):
    """The library's pre-tokens of `text` as raw text."""
    return [byte_level_to_text(p) for p, _ in tok.pre_tokenizer.pre_tokenize_str(text)]


# Character pools for generated strings.
POOLS = {
    "ascii": [chr(c) for c in range(0x20, 0x7F)],
    "space": [" ", " ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u2009", "\u200b",
              "\u3000", "\u2028", "\u180e", "\u0085", "\u000b", "\u000c", "\ufeff",
              "\u202f", "\u205f", "\u1680"],
    "digit": list("0123456789") + ["١", "٢", "३", "४", "²", "½", "Ⅻ", "①", "𝟙", "〇", "一"],
    "cjk": list("人工智能深度求索世界中国大学東京日本語漢字龥一丁") + ["\U00020000", "\U0002a6d6", "\U00031350"],
    "kana": list("ぁあいうえおかきくけこゃゔゖゟ゠ァアイウエオカキクケコヴヵヶヷヿーｱｲｳ"),
    "hangul": list("한국어문장서울ᄀ깍"),
    "arabic": list("مرحبابالعالماللغةالعربيةً ٌ ٍ َ ُ ِ ّ ْ ٰ") + ["\u0897"],
    "devanagari": list("नमस्तेदुनियाहिन्दीभाषा") + ["\u0901", "\u094d", "\u093c"],
    "thai": list("ภาษาไทยสวัสดีครับ่้๊๋"),
    "latin": list("éèêëàâäçñøåæœßÉÀÇÑØÅÆŒẞǅǆǄĳŉſﬁﬀ") + ["e\u0301", "a\u0308", "o\u0323\u0302"],
    "cyrillic": list("ПриветмирЁёЪъ") + ["\u1c89", "\u1c8a"],
    "combining": ["\u0300", "\u0301", "\u0302", "\u0308", "\u0327", "\u20dd", "\u0489", "\u1ab0", "\ufe0f", "\ufe0e", "\u200d", "\u200c"],
    "emoji": ["😀", "👍", "🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇯🇵", "🫠", "🫨", "🩷", "🫩", "🪾",
              "\U0001f9d1\u200d\U0001f4bb", "🙂\u200d↕️", "#️⃣", "©", "™", "🀄", "🃏"],
    "punct": list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + list("。、！？「」『』（）《》【】…—–‘’“”«»¿¡§¶•·・〜～"),
    "symbol": list("∑∞≤≥≈√∫∂∆∇⊕⊗→←↔⇒€£¥₹₿°℃№™©®¤¦¨¯´¸˘˙˚˛˜˝") + ["\u2427", "\U0001cc00", "\U0001f6dc"],
    "rare": ["\U00010d40", "\U00010d4a", "\U000116d0", "\U00011f50", "\U0001e4f0", "\U0001e030",
             "\U0001d2c0", "\u1b4e", "\u1b7f", "\u0cf3", "\U00011f43", "\U000e0001", "\U000e0041",
             "\U000f0000", "\U0010fffd", "\ue000", "\u0378", "\U0001fffe", "\x00", "\x01", "\x1b", "\x7f"],
}


def random_strings(seed, count, specials=()):
    """`count` random strings mixing the pools (and `specials`)."""
    rng = random.Random(seed)
    names = sorted(POOLS)
    out = []
    for i in range(count):
        chosen = rng.sample(names, rng.randint(1, 4))
        n = rng.choice([1, 2, 3, 5, 8, 13, 30, 80])
        parts = []
        for _ in range(n):
            if specials and rng.random() < 0.04:
                parts.append(rng.choice(specials))
                continue
            pool = POOLS[rng.choice(chosen)]
            c = rng.choice(pool)
            if rng.random() < 0.15:
                c = c * rng.randint(2, 6)
            parts.append(c)
        out.append("".join(parts))
    return out


def dump_lines(path, items, ensure_ascii=False):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for item in items:
            if isinstance(item, list):
                f.write(json.dumps(item, separators=(",", ":"), ensure_ascii=False) + "\n")
            else:
                f.write(json.dumps(item, ensure_ascii=ensure_ascii) + "\n")


def load_lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]
