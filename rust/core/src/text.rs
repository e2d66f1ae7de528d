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
//! Both split 64 bytes at a time: SIMD comparisons classify the ASCII bytes of a block into
//! bitmasks (SSE2, or one 64-byte compare per class with AVX-512), each non-ASCII character is
//! decoded and classified on its own, and token starts and ends fall out of the masks with a few
//! shifts.
//!
//! Lowercasing, when asked for, is Python's `str.lower()`: the full Unicode case mapping with the
//! final-sigma rule (`'İ'` becomes two code points, a word-final `Σ` becomes `ς`).

use std::ops::Range;

use crate::error::{Error, Result};
use crate::simd::Simd;

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

    /// Appends the byte ranges of the tokens of `text` to `spans`, in order.
    pub fn split_into(self, text: &str, spans: &mut Vec<Range<usize>>) {
        self.split_into_with(Simd::detected(), text, spans);
    }

    /// [`Self::split_into`] on the SIMD path of `simd` (which the processor must have).
    fn split_into_with(self, simd: Simd, text: &str, spans: &mut Vec<Range<usize>>) {
        #[cfg(target_arch = "x86_64")]
        if simd == Simd::Avx512 {
            // SAFETY: the caller checked that the processor has AVX-512 (F, BW and DQ).
            unsafe {
                match self {
                    Tokenizer::WordPunct => avx512::split_wordpunct(text, spans),
                    Tokenizer::Whitespace => avx512::split_fasttext_whitespace(text.as_bytes(), spans),
                }
            }
            return;
        }
        let _ = simd;
        match self {
            Tokenizer::WordPunct => split_wordpunct(text, ascii_masks, spans),
            Tokenizer::Whitespace => split_fasttext_whitespace(text.as_bytes(), ascii_masks, spans),
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

/// Lowercases one token like Python's `str.lower()` would inside its text, appending to `out`.
///
/// Lowercasing character by character is exact except for the final-sigma rule, which looks
/// at the neighbours of `Σ` (U+03A3) across token boundaries: callers lowercase text with a
/// token that contains `Σ` as a whole with [`lowercase_into`] instead.
pub fn lowercase_token_into(token: &str, out: &mut Vec<u8>) {
    let mut utf8 = [0u8; 4];
    for c in token.chars().flat_map(char::to_lowercase) {
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
}

/// Splitting works on blocks of 64 bytes, one bit per byte.
const BLOCK: usize = 64;

/// Which bytes of a block belong to word runs and which to punctuation runs; bytes in neither
/// are spaces. A token is a maximal run of one class.
struct RunMasks {
    word: u64,
    punct: u64,
}

/// Per-byte classes of the ASCII bytes of a block, and where its non-ASCII bytes are.
struct AsciiMasks {
    /// `[0-9A-Za-z_]`.
    word: u64,
    /// `\s` within ASCII: space, `\t`, `\n`, `\v`, `\f`, `\r`.
    space: u64,
    /// fastText's separators: space, `\n`, `\r`, `\t`, `\v`, `\f`, `\0`.
    fasttext_separator: u64,
    /// Bytes >= 0x80.
    non_ascii: u64,
}

#[cfg(target_arch = "x86_64")]
fn ascii_masks(block: &[u8; BLOCK]) -> AsciiMasks {
    use std::arch::x86_64::*;
    let mut masks = AsciiMasks { word: 0, space: 0, fasttext_separator: 0, non_ascii: 0 };
    // SAFETY: SSE2 is part of the x86_64 baseline, and each load reads 16 bytes of `block`
    // (`loadu` has no alignment requirement).
    unsafe {
        let splat = |b: u8| _mm_set1_epi8(b as i8);
        // Signed comparisons: bytes >= 0x80 are negative, so they fall outside every ASCII range.
        let in_range = |v: __m128i, lo: u8, hi: u8| {
            _mm_and_si128(_mm_cmpgt_epi8(v, splat(lo - 1)), _mm_cmplt_epi8(v, splat(hi + 1)))
        };
        let bits = |v: __m128i| u64::from(_mm_movemask_epi8(v) as u16);
        for (k, chunk) in block.chunks_exact(16).enumerate() {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            let letter = in_range(_mm_or_si128(v, splat(0x20)), b'a', b'z');
            let word = _mm_or_si128(_mm_or_si128(letter, in_range(v, b'0', b'9')), _mm_cmpeq_epi8(v, splat(b'_')));
            let space = _mm_or_si128(in_range(v, b'\t', b'\r'), _mm_cmpeq_epi8(v, splat(b' ')));
            let separator = _mm_or_si128(space, _mm_cmpeq_epi8(v, _mm_setzero_si128()));
            let shift = 16 * k;
            masks.word |= bits(word) << shift;
            masks.space |= bits(space) << shift;
            masks.fasttext_separator |= bits(separator) << shift;
            masks.non_ascii |= bits(v) << shift;
        }
    }
    masks
}

#[cfg(not(target_arch = "x86_64"))]
fn ascii_masks(block: &[u8; BLOCK]) -> AsciiMasks {
    let mut masks = AsciiMasks { word: 0, space: 0, fasttext_separator: 0, non_ascii: 0 };
    for (i, &b) in block.iter().enumerate() {
        let bit = 1u64 << i;
        if b.is_ascii_alphanumeric() || b == b'_' {
            masks.word |= bit;
        }
        if matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            masks.space |= bit;
        }
        if matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c | 0) {
            masks.fasttext_separator |= bit;
        }
        if b >= 0x80 {
            masks.non_ascii |= bit;
        }
    }
    masks
}

/// The low `n` bits (n <= 64).
#[inline]
fn low_bits(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// The class of a non-ASCII character under `wordpunct`.
#[derive(Clone, Copy, Default)]
enum WideClass {
    Word,
    Space,
    #[default]
    Punct,
}

impl WideClass {
    fn of(c: char) -> Self {
        if regex_syntax::is_word_character(c) {
            WideClass::Word
        } else if c.is_whitespace() {
            WideClass::Space
        } else {
            WideClass::Punct
        }
    }
}

/// The bytes of a non-ASCII character that started in an earlier block.
#[derive(Default)]
struct Straddling {
    class: WideClass,
    bytes_left: usize,
}

/// Word-punct classes of a block: ASCII bytes from the SIMD masks, each non-ASCII character
/// decoded and classified, its class given to all its bytes.
#[inline(always)]
fn wordpunct_masks(text: &str, ascii: AsciiMasks, base: usize, straddling: &mut Straddling) -> RunMasks {
    let AsciiMasks { mut word, mut space, mut non_ascii, .. } = ascii;
    let mut set_class = |class: WideClass, bits: u64| match class {
        WideClass::Word => word |= bits,
        WideClass::Space => space |= bits,
        WideClass::Punct => {}
    };
    if straddling.bytes_left > 0 {
        let bits = low_bits(straddling.bytes_left);
        set_class(straddling.class, bits);
        non_ascii &= !bits;
        straddling.bytes_left = 0;
    }
    while non_ascii != 0 {
        let at = non_ascii.trailing_zeros() as usize;
        let c = text[base + at..].chars().next().expect("non-ASCII bytes left to classify start a character");
        let class = WideClass::of(c);
        let end = at + c.len_utf8();
        let bits = low_bits(end) & !low_bits(at);
        set_class(class, bits);
        non_ascii &= !bits;
        if end > BLOCK {
            *straddling = Straddling { class, bytes_left: end - BLOCK };
        }
    }
    RunMasks { word, punct: !(word | space) }
}

/// Appends to `spans` each maximal run of bytes of one class, a block of 64 bytes at a time:
/// `masks_of(block, base)` classifies the block starting at byte `base`. The text is followed by
/// spaces up to a block boundary (and by a whole block of spaces if a token reaches the end of a
/// text whose length is a multiple of 64), so every token ends inside some block.
#[inline(always)]
fn split_runs(bytes: &[u8], mut masks_of: impl FnMut(&[u8; BLOCK], usize) -> RunMasks, spans: &mut Vec<Range<usize>>) {
    // Start of a token that runs past the current block.
    let mut open: Option<usize> = None;
    // Classes of the byte before the block, as bit 0.
    let (mut word_before_block, mut punct_before_block) = (0u64, 0u64);
    let mut padded = [b' '; BLOCK];
    let mut base = 0;
    while base < bytes.len() || (base == bytes.len() && open.is_some()) {
        let block: &[u8; BLOCK] = match bytes[base..].first_chunk::<BLOCK>() {
            Some(block) => block,
            None => {
                let tail = &bytes[base..];
                padded[..tail.len()].copy_from_slice(tail);
                &padded
            }
        };
        let RunMasks { word, punct } = masks_of(block, base);
        let word_before = (word << 1) | word_before_block;
        let punct_before = (punct << 1) | punct_before_block;
        word_before_block = word >> (BLOCK - 1);
        punct_before_block = punct >> (BLOCK - 1);
        // Bit i of `starts`: a token starts at byte i; of `ends`: a token ends just before byte i.
        let mut starts = (word & !word_before) | (punct & !punct_before);
        let mut ends = (word_before & !word) | (punct_before & !punct);
        // A token open since an earlier block ends at the block's first end (while it stays open,
        // the block has no start either).
        if ends != 0
            && let Some(start) = open.take()
        {
            spans.push(start..base + ends.trailing_zeros() as usize);
            ends &= ends - 1;
        }
        // Tokens alternate start, end, start, end: each remaining end closes the next start, and
        // a start left over opens a token that ends in a later block. A counted loop with no
        // branch per token, writing into room reserved once per block.
        spans.extend((0..ends.count_ones()).map(|_| {
            let span = base + starts.trailing_zeros() as usize..base + ends.trailing_zeros() as usize;
            starts &= starts - 1;
            ends &= ends - 1;
            span
        }));
        if starts != 0 {
            open = Some(base + starts.trailing_zeros() as usize);
        }
        base += BLOCK;
    }
}

/// Splits `text` as [`Tokenizer::WordPunct`], with the ASCII classes of each block from
/// `ascii_masks_of`.
#[inline(always)]
fn split_wordpunct(text: &str, ascii_masks_of: impl Fn(&[u8; BLOCK]) -> AsciiMasks, spans: &mut Vec<Range<usize>>) {
    let mut straddling = Straddling::default();
    let masks_of = |block: &[u8; BLOCK], base| wordpunct_masks(text, ascii_masks_of(block), base, &mut straddling);
    split_runs(text.as_bytes(), masks_of, spans);
}

/// Splits `bytes` as [`Tokenizer::Whitespace`], with the ASCII classes of each block from
/// `ascii_masks_of`.
#[inline(always)]
fn split_fasttext_whitespace(
    bytes: &[u8],
    ascii_masks_of: impl Fn(&[u8; BLOCK]) -> AsciiMasks,
    spans: &mut Vec<Range<usize>>,
) {
    split_runs(bytes, |block, _| RunMasks { word: !ascii_masks_of(block).fasttext_separator, punct: 0 }, spans);
}

/// The splitters compiled for AVX-512: one 64-byte compare per class and block, straight into a
/// mask register, instead of four 16-byte compares and a movemask each.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{AsciiMasks, BLOCK};

    /// Bytes of `v` in `first..first + count` (unsigned: bytes >= 0x80 are never in an ASCII range).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn in_range(v: __m512i, first: u8, count: u8) -> u64 {
        _mm512_cmplt_epu8_mask(_mm512_sub_epi8(v, _mm512_set1_epi8(first as i8)), _mm512_set1_epi8(count as i8))
    }

    /// [`super::ascii_masks`] of a block.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn ascii_masks(block: &[u8; BLOCK]) -> AsciiMasks {
        // SAFETY: the load reads the 64 bytes of `block` (`loadu` has no alignment requirement).
        let v = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
        let letter = in_range(_mm512_or_si512(v, _mm512_set1_epi8(0x20)), b'a', 26);
        let word = letter | in_range(v, b'0', 10) | _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b'_' as i8));
        let space = in_range(v, b'\t', 5) | _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b' ' as i8));
        let nul = _mm512_testn_epi8_mask(v, v);
        AsciiMasks { word, space, fasttext_separator: space | nul, non_ascii: _mm512_movepi8_mask(v) }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn split_wordpunct(text: &str, spans: &mut Vec<Range<usize>>) {
        super::split_wordpunct(text, |block| ascii_masks(block), spans)
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn split_fasttext_whitespace(bytes: &[u8], spans: &mut Vec<Range<usize>>) {
        super::split_fasttext_whitespace(bytes, |block| ascii_masks(block), spans)
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

    /// Character-at-a-time splitting, the definition the block splitter must match.
    fn reference_tokens(tokenizer: Tokenizer, text: &str) -> Vec<String> {
        let class = |c: char| match tokenizer {
            Tokenizer::WordPunct => match WideClass::of(c) {
                WideClass::Word => 1,
                WideClass::Space => 0,
                WideClass::Punct => 2,
            },
            Tokenizer::Whitespace => u8::from(!matches!(c, ' ' | '\n' | '\r' | '\t' | '\u{b}' | '\u{c}' | '\0')),
        };
        let mut out: Vec<String> = Vec::new();
        let mut previous = 0;
        for c in text.chars() {
            let current = class(c);
            if current != 0 {
                if current == previous {
                    out.last_mut().expect("a run is open").push(c);
                } else {
                    out.push(c.to_string());
                }
            }
            previous = current;
        }
        out
    }

    #[test]
    fn block_splitting_equals_character_splitting_across_block_boundaries() {
        // Runs of each class and characters of every UTF-8 width, at every offset around block
        // boundaries, in texts of lengths around multiples of 64.
        let alphabet =
            ["a", "Z", "_", "7", " ", "\n", "\0", ".", "--", "é", "€", "😀", "\u{a0}", "\u{3000}", "\u{301}", "²"];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..4000 {
            let mut text = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let target_len = (state % 200) as usize;
            while text.len() < target_len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let piece = alphabet[(state % alphabet.len() as u64) as usize];
                let repeat = 1 + (state >> 32) as usize % 9;
                for _ in 0..repeat {
                    text.push_str(piece);
                }
            }
            for tokenizer in [Tokenizer::WordPunct, Tokenizer::Whitespace] {
                let expected = reference_tokens(tokenizer, &text);
                for simd in Simd::available() {
                    let mut spans = Vec::new();
                    tokenizer.split_into_with(simd, &text, &mut spans);
                    let got: Vec<&str> = spans.into_iter().map(|span| &text[span]).collect();
                    assert_eq!(got, expected, "{tokenizer:?} {simd:?} {text:?}");
                }
            }
        }
        // A token that ends exactly at a block boundary, and one that fills whole blocks.
        for len in [63, 64, 65, 128, 200] {
            let text = "x".repeat(len);
            assert_eq!(tokens(Tokenizer::WordPunct, &text, false), vec![text.clone()]);
            assert_eq!(tokens(Tokenizer::Whitespace, &text, false), vec![text]);
        }
    }

    #[test]
    fn lowercasing_keeps_every_characters_class() {
        // This is what lets the featuriser split the original text and lowercase token by token.
        // The exceptions are version skew: U+A7D2 and U+A7D4 (Unicode 16) have lowercase mappings
        // in the standard library's tables but are unassigned in `regex-syntax`'s.
        let skewed = ['\u{a7d2}', '\u{a7d4}'];
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32).filter(|c| !skewed.contains(c)) {
            for lower in c.to_lowercase() {
                assert!(
                    std::mem::discriminant(&WideClass::of(lower)) == std::mem::discriminant(&WideClass::of(c)),
                    "{c:?} lowercases to {lower:?} of another class"
                );
            }
        }
    }

    #[test]
    fn token_lowercasing_equals_text_lowercasing_without_capital_sigma() {
        for text in ["İSTANBUL ǅemal", "ÀB-ΓΔ", "ΟΔΟΣ ΟΔΟΣ.", "ΑΣ ΒΑΣ'"] {
            let mut whole = String::new();
            let expected = tokens(Tokenizer::WordPunct, lowercase_into(text, &mut whole), false);
            let mut spans = Vec::new();
            Tokenizer::WordPunct.split_into(text, &mut spans);
            let per_token: Vec<String> = spans
                .into_iter()
                .map(|span| {
                    let mut out = Vec::new();
                    lowercase_token_into(&text[span], &mut out);
                    String::from_utf8(out).unwrap()
                })
                .collect();
            assert_eq!(per_token == expected, !text.contains('Σ'), "{text:?}");
        }
    }

    #[test]
    fn names_round_trip_and_unknown_is_rejected() {
        for t in [Tokenizer::WordPunct, Tokenizer::Whitespace] {
            assert_eq!(Tokenizer::from_name(t.name()).unwrap(), t);
        }
        assert!(Tokenizer::from_name("bpe").is_err());
    }
}
