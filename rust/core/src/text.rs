//! Text → words.
//!
//! Two tokenizers:
//!
//! * [`Tokenizer::WordPunct`]: maximal runs of word characters (`\w`) or of characters that are
//!   neither word characters nor whitespace (`[^\w\s]`). This is nltk's `WordPunctTokenizer`, the
//!   default of the `data-selection` (DSIR) package. `\w` and `\s` follow the `regex` module that
//!   nltk >= 3.10.3 uses (Unicode TR18: `\w` = Alphabetic + Mark + Decimal_Number +
//!   Connector_Punctuation + Join_Control; `\s` = White_Space). nltk <= 3.10.2 used the standard
//!   library `re`, where `\w` is `str.isalnum()` or `_` (so combining marks split words and `²`
//!   joins them) and `\s` is `str.isspace()` (which adds U+001C..U+001F).
//! * [`Tokenizer::Whitespace`]: fastText's split on the bytes space, `\n`, `\r`, `\t`, `\v`,
//!   `\f` and `\0`.
//!
//! Lowercasing, when asked for, is Python's `str.lower()`: the full Unicode case mapping with the
//! final-sigma rule (`'İ'` becomes two code points, a word-final `Σ` becomes `ς`).

use std::ops::Range;

use crate::error::{Error, Result};

/// How text is split into words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokenizer {
    WordPunct,
    Whitespace,
}

impl Tokenizer {
    /// Parses the public name of a tokenizer.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "wordpunct" => Ok(Tokenizer::WordPunct),
            "whitespace" => Ok(Tokenizer::Whitespace),
            other => {
                Err(Error::invalid(format!("unknown tokenizer {other:?}; expected \"wordpunct\" or \"whitespace\"")))
            }
        }
    }

    /// The public name, as stored in a feature space.
    pub fn name(self) -> &'static str {
        match self {
            Tokenizer::WordPunct => "wordpunct",
            Tokenizer::Whitespace => "whitespace",
        }
    }

    /// Whether this tokenizer lowercases unless told otherwise (DSIR lowercases, fastText not).
    pub fn lowercases_by_default(self) -> bool {
        matches!(self, Tokenizer::WordPunct)
    }

    /// Appends the byte ranges of the tokens of `text` to `spans`.
    pub fn split_into(self, text: &str, spans: &mut Vec<Range<usize>>) {
        self.for_each_token(text, |span| spans.push(span));
    }

    /// Calls `f` with the byte range of each token of `text`, in order.
    #[inline]
    pub fn for_each_token(self, text: &str, f: impl FnMut(Range<usize>)) {
        match self {
            Tokenizer::WordPunct => split_wordpunct(text, f),
            Tokenizer::Whitespace => split_fasttext_whitespace(text.as_bytes(), f),
        }
    }
}

/// Returns `text` lowercased like Python's `str.lower()`, reusing `scratch` for ASCII text.
pub fn lowercase_into<'a>(text: &str, scratch: &'a mut String) -> &'a str {
    scratch.clear();
    if text.is_ascii() {
        scratch.push_str(text);
        scratch.make_ascii_lowercase();
    } else {
        // `str::to_lowercase` applies the final-sigma rule; the per-char mapping does not.
        scratch.push_str(&text.to_lowercase());
    }
    scratch
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CharClass {
    Space,
    Word,
    Punct,
}

const ASCII_CLASS: [CharClass; 128] = {
    let mut table = [CharClass::Punct; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = if c.is_ascii_alphanumeric() || c == b'_' {
            CharClass::Word
        } else if matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            CharClass::Space
        } else {
            CharClass::Punct
        };
        b += 1;
    }
    table
};

/// Class and UTF-8 length of the character starting at byte `at` of `text`.
#[inline]
fn class_at(text: &str, at: usize) -> (CharClass, usize) {
    let b = text.as_bytes()[at];
    if b < 0x80 {
        return (ASCII_CLASS[b as usize], 1);
    }
    let c = text[at..].chars().next().expect("`at` is a char boundary inside `text`");
    let class = if c.is_whitespace() {
        CharClass::Space
    } else if regex_syntax::is_word_character(c) {
        CharClass::Word
    } else {
        CharClass::Punct
    };
    (class, c.len_utf8())
}

#[inline]
fn split_wordpunct(text: &str, f: impl FnMut(Range<usize>)) {
    if text.is_ascii() {
        split_runs(text.len(), f, |at| (ASCII_CLASS[text.as_bytes()[at] as usize], 1));
    } else {
        split_runs(text.len(), f, |at| class_at(text, at));
    }
}

/// Calls `f` with each maximal run of equal non-space class; `class_at(i)` gives the class and
/// width of the character at byte `i`.
#[inline(always)]
fn split_runs(len: usize, mut f: impl FnMut(Range<usize>), class_at: impl Fn(usize) -> (CharClass, usize)) {
    let mut at = 0;
    while at < len {
        let (class, width) = class_at(at);
        let start = at;
        at += width;
        if class == CharClass::Space {
            continue;
        }
        while at < len {
            let (next, width) = class_at(at);
            if next != class {
                break;
            }
            at += width;
        }
        f(start..at);
    }
}

#[inline]
fn is_fasttext_separator(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c | 0)
}

#[inline]
fn split_fasttext_whitespace(bytes: &[u8], mut f: impl FnMut(Range<usize>)) {
    let mut at = 0;
    while at < bytes.len() {
        if is_fasttext_separator(bytes[at]) {
            at += 1;
            continue;
        }
        let start = at;
        while at < bytes.len() && !is_fasttext_separator(bytes[at]) {
            at += 1;
        }
        f(start..at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(tokenizer: Tokenizer, text: &str, lowercase: bool) -> Vec<String> {
        let mut scratch = String::new();
        let text = if lowercase { lowercase_into(text, &mut scratch) } else { text };
        let mut spans = Vec::new();
        tokenizer.split_into(text, &mut spans);
        spans.into_iter().map(|r| text[r].to_string()).collect()
    }

    #[test]
    fn wordpunct_matches_nltk_examples() {
        let t = |s| tokens(Tokenizer::WordPunct, s, true);
        assert_eq!(t("Alice went to the store"), ["alice", "went", "to", "the", "store"]);
        assert_eq!(t("don't"), ["don", "'", "t"]);
        assert_eq!(t("$3.88 ---"), ["$", "3", ".", "88", "---"]);
        assert_eq!(t("😀😀 x"), ["😀😀", "x"]);
        assert_eq!(t(""), Vec::<String>::new());
        assert_eq!(t(" \t\n "), Vec::<String>::new());
    }

    #[test]
    fn wordpunct_uses_regex_module_classes() {
        let t = |s| tokens(Tokenizer::WordPunct, s, false);
        // A combining mark (Mn) is a word character under the `regex` module.
        assert_eq!(t("e\u{301}té"), ["e\u{301}té"]);
        // Superscript two (No) is not: nltk <= 3.10.2 kept `x²` together, `regex` splits it.
        assert_eq!(t("x²"), ["x", "²"]);
        // U+001C is not White_Space, so it is a punctuation token of its own.
        assert_eq!(t("a\u{1c}b"), ["a", "\u{1c}", "b"]);
        // Unicode spaces separate.
        assert_eq!(t("a\u{a0}b\u{3000}c"), ["a", "b", "c"]);
    }

    #[test]
    fn lowercasing_follows_python() {
        let mut s = String::new();
        assert_eq!(lowercase_into("İ", &mut s), "i\u{307}");
        assert_eq!(lowercase_into("ΟΔΟΣ ΟΔΟΣ.", &mut s), "οδος οδος.");
        assert_eq!(lowercase_into("ABC", &mut s), "abc");
    }

    #[test]
    fn whitespace_split_is_fasttexts() {
        let t = |s| tokens(Tokenizer::Whitespace, s, false);
        assert_eq!(t("Hello  World\n\tx\u{0}y\u{b}z\u{c}w\r"), ["Hello", "World", "x", "y", "z", "w"]);
        // Non-breaking space is not a fastText separator.
        assert_eq!(t("a\u{a0}b"), ["a\u{a0}b"]);
    }

    #[test]
    fn names_round_trip_and_unknown_is_rejected() {
        for t in [Tokenizer::WordPunct, Tokenizer::Whitespace] {
            assert_eq!(Tokenizer::from_name(t.name()).unwrap(), t);
        }
        assert!(Tokenizer::from_name("bpe").is_err());
    }
}
