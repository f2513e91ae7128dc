#!/usr/bin/env python3
"""Writes corpus.jsonl: adversarial tokenizer samples, one {"text": ...} per line.

Run once; the output is committed together with the goldens generated from it
(gen_goldens.py for tiktoken / HF tokenizers, gen_spm_goldens.mjs for SentencePiece).
"""
import json
import os

S = []

def add(*xs):
    S.extend(xs)

# Ordinary prose and code.
add("Hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.",
    "BitNet b1.58 uses ternary weights {-1, 0, +1} and 8-bit activations.",
    "In 1969, Apollo 11 landed on the Moon; 600 million people watched.",
    "Mr. O'Neil's dog didn't bark.", "e.g. i.e. etc. vs. Dr. St. Jr.",
    "def f(x):\n    return x * 2\n", "int main() {\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * c; }",
    "#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))\n",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "https://example.com/path?q=1&r=two#frag", "user@example.org", "C:\\Windows\\System32\\drivers\\etc\\hosts",
    "$ echo $HOME && ls -la | grep '^d' > out.txt 2>&1",
    "x = [i**2 for i in range(10) if i % 2 == 0]",
    "    indented with four spaces", "\tindented with a tab", "camelCaseIdentifier snake_case_identifier SCREAMING_CASE",
    "README.md CMakeLists.txt foo.tar.gz", "1.0e-10 3.14159 -42 +7 0x1F 0b1010 1_000_000",
    )
# Whitespace runs.
add(" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", "\n\n  \n", "a  b   c    d", "trailing space ",
    "trailing spaces   ", "trailing tab\t", "  leading spaces", "\t\tleading tabs", "mixed \t \t mix",
    "line1\nline2\r\nline3\rline4", "a\n\n\nb", "a \n b", "a\t\n\tb", " \n \n ", "x\r\n\r\n\r\ny",
    "word \n", "end.\n\n", "   \n\n\n   x", "\u000b\u000c vertical tab form feed", "a\u000bb\u000cc",
    "many          spaces          here", "  \t  \n  \t  ", "\n \n\t\n", "a \u00a0b", "\u00a0\u00a0leading nbsp",
    "ideographic\u3000space\u3000\u3000x", "line\u2028separator", "para\u2029separator", "next\u0085line",
    "en\u2002em\u2003thin\u2009hair\u200a", "narrow\u202fnbsp", "ogham\u1680space", "zero\u200bwidth\u200bspace",
    "bom\ufeffinside", "\u3000", "\u0085", " \u0085 ", "\u2028\u2028", "x \u00a0 \u00a0 y", "tab\t\u00a0mix",
    )
# Contractions, case.
add("I'm you're we've they'll she'd it's don't", "I'M YOU'RE WE'VE THEY'LL SHE'D IT'S DON'T",
    "John'S cat'Ll be'Re here'Ve", "'s 't 're 've 'm 'll 'd", "''s'''t", "x'sy 'S'T'RE",
    "rock 'n' roll", "'tis the season", "the '90s", "O'Reilly's book", "l'homme d'affaires",
    "it\u2019s curly apostrophe", "'\u017f long s", "K'LL Kelvin\u212a", "'Ss 'LLama",
    "ALL CAPS SENTENCE WITH NUMBERS 123", "MiXeD CaSe WoRdS", "ß ẞ SS ss", "İstanbul ıi",
    )
# Numbers.
add("1", "12", "123", "1234", "12345", "123456789012345678901234567890", "3.14159265358979323846",
    "2024-01-01T12:34:56Z", "+1 (555) 123-4567", "$1,234,567.89", "100%", "1st 2nd 3rd 4th",
    "٠١٢٣٤٥٦٧٨٩ Arabic-Indic digits", "१२३४५ Devanagari digits", "①②③ circled", "½ ¾ ⅓ fractions",
    "x1y22z333w4444", "ⅠⅡⅢⅣ Roman numerals", "１２３ fullwidth digits",
    )
# Scripts.
add("你好，世界！", "我爱自然语言处理。这是一个测试句子，包含标点符号。", "日本語のテキストとカタカナとひらがな",
    "한국어 문장입니다.", "中文English混合text测试", "東京タワーは333メートルです",
    "مرحبا بالعالم", "اللُّغَةُ العَرَبِيَّةُ", "שלום עולם", "नमस्ते दुनिया", "हिन्दी में लिखा गया वाक्य।",
    "สวัสดีครับ ภาษาไทยไม่มีช่องว่าง", "Привет, мир! Ёлки-палки.", "Γειά σου Κόσμε", "Ελληνικά ΚΕΦΑΛΑΙΑ",
    "ქართული ენა", "Հայերեն", "አማርኛ", "தமிழ் மொழி", "తెలుగు", "ಕನ್ನಡ", "മലയാളം", "বাংলা ভাষা",
    "ພາສາລາວ", "ខ្មែរ", "မြန်မာ", "བོད་ཡིག", "Tiếng Việt có dấu", "Türkçe ğüşöçı", "Français: à la crème brûlée",
    "Español: ¿Qué tal? ¡Muy bien!", "Deutsch: Größe, Maß, Übermäßig", "Polski: zażółć gęślą jaźń",
    "Čeština: příliš žluťoučký kůň", "Íslenska: þ ð æ", "Māori: tēnā koe",
    )
# Combining marks and normalisation-sensitive text.
add("e\u0301 vs \u00e9", "a\u0300\u0301\u0302\u0303\u0304", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354LG\u0350\u036f",
    "\u0301 leading combining", "n\u0303o\u0308", "ﬁ ﬂ ligatures", "Å vs A\u030a", "\u1100\u1161\u11a8 jamo",
    "ｆｕｌｌｗｉｄｔｈ", "𝐁𝐨𝐥𝐝 𝕄𝕒𝕥𝕙", "x\u0338", "\u094d\u0915 virama first",
    )
# Emoji and symbols.
add("😀", "😀😃😄😁", "I love 🍕 and 🍣!", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "👍🏽 thumbs", "🇺🇸🇯🇵🇩🇪 flags",
    "❤️ heart with VS16", "©®™", "→ ← ↑ ↓ ⇒ ⇔", "∀x∈ℝ: x²≥0", "∑_{i=1}^{n} i = n(n+1)/2", "♠♣♥♦",
    "🤷‍♀️🧑‍💻", "★☆✓✗", "keycap 1️⃣ #️⃣", "😀 😀  😀", "a😀b", "🙂\n🙃", "\U0001F600\U0001F3FB",
    )
# Punctuation runs.
add("!!!", "???!!!...", "...", "…", "--", "---", "—", "–", "!@#$%^&*()_+-=[]{}|;':\",./<>?",
    "a!!b??c..d", "((((((nested))))))", "<<<>>>", "''''", "\"\"\"\"", "`code` ``more``", "~~~", "***bold***",
    "__init__", "=====", "/*comment*/", "// comment\n", ";;\n;;", "?!\n\n", ".\r\n", "a.\n\nb", "»«„“”‘’",
    "¡¿", "、。「」『』【】", "،؛؟", "।॥", ". . .", "- - -", " !", "  !!", "\t!", "!\n", "x !\n\n\ty",
    )
# Literal special-token strings.
add("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<|begin_of_text|>System: Be brief.<|eot_id|>User: Hi!<|eot_id|>Assistant: Hello.<|eot_id|>",
    "text<|reserved_special_token_0|>more<|reserved_special_token_250|>", "<|eot_id|><|eot_id|>",
    "<|not_a_special|>", "<|eot_id", "eot_id|>", "< |eot_id| >", "<|EOT_ID|>", " <|eot_id|> ",
    "a<|begin_of_text|>b", "<|reserved_special_token_251|>", "<s> </s> <unk>", "<|endoftext|>",
    "<|eot_id|>\n\n", "\n<|eot_id|>",
    )
# Mixed adversarial.
add("a\u00a0b\u3000c\u2028d\u0085e", "x \t\u00a0\n y", "😀 \n\n", " 123 456", "abc123def", "123abc",
    "a1b2c3", "$$$1234$$$", "'s123", "\u3000\u3000\u3000漢字", "Hello\u00a0World", "\u200d", "\ufffd replacement",
    "Ω≈ç√∫˜µ≤≥÷", "åß∂ƒ©˙∆˚¬…æ", "\u0000 NUL byte", "bell\u0007 esc\u001b[31m red", "\u001c\u001d\u001e\u001f info seps",
    "a" * 300, " " * 100, "ab" * 150, "1" * 50, "\n" * 20, "😀" * 30,
    )
# Letters and digits assigned after Unicode 14 (PCRE2 10.42's tables): Kawi, Nag Mundari, CJK
# extensions H and I, Unicode 16 scripts (Garay, Todhri, Sunuwar, Kirat Rai, Ol Onal), new Latin,
# Cyrillic modifier and kana letters.
add("x \U00011F04\U00011F05\U00011F06 y", "\U00011F50\U00011F51\U00011F52\U00011F53 Kawi digits",
    "\U0001E4D0\U0001E4D1\U0001E4D2 abc \U0001E4F0\U0001E4F1", "\U00031350\U00031351 text",
    "\U0002EBF0\U0002EBF1 CJK-I", "\U00010D4A\U00010D4B \U00010D40\U00010D41\U00010D42\U00010D43 Garay",
    "\U000105C0\U000105C1 Todhri", "\U00011BC0\U00011BC1 \U00011BF0\U00011BF1 Sunuwar",
    "\U00016D43\U00016D44 \U00016D70\U00016D71 Kirat", "\U0001E5D0\U0001E5D1 \U0001E5F1\U0001E5F2 Onal",
    "ab\U0001DF25c", "a\U0001E030b", "\U0001B132\U0001B155 kana", "\u0ccb\u0cf3 kannada",
    "'s\U0001E4D0", " \U00011F04",
    )
# Longer prose.
add("Machine learning is a field of study in artificial intelligence concerned with the development and study of statistical algorithms that can learn from data and generalize to unseen data, and thus perform tasks without explicit instructions.\n\nRecently, artificial neural networks have been able to surpass many previous approaches in performance.",
    "Q: What is 2+2?\nA: 4.\n\nQ: What's the capital of France?\nA: Paris.",
    "Ladies and gentlemen,   we are   gathered here today... to celebrate!!!   Isn't it GREAT?!",
    )

assert len(S) == len(set(S)), [s for s in S if S.count(s) > 1]
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "corpus.jsonl"), "w", encoding="utf-8") as f:
    for s in S:
        f.write(json.dumps({"text": s}, ensure_ascii=True) + "\n")
print(len(S), "samples")
