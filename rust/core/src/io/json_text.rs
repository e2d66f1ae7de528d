//! A fast path for the common JSON Lines record: the text field of a top-level object, found by
//! one scan that looks at most bytes 16 at a time, instead of serde_json's byte-by-byte state
//! machine and its copies of escaped strings.
//!
//! The scanner vouches only for what it fully checks: an object whose keys have no escapes,
//! values that are strings, numbers, `true`, `false`, `null`, arrays and objects nested up to
//! [`MAX_DEPTH`] levels, and a string value for the field. Anything else, every malformed line
//! included, gives `None`, and the caller parses the line with serde_json, which gives the verdict
//! and its message. So the fast path may decline a line serde_json accepts, but it never accepts
//! one serde_json rejects, and where both accept they give the same text (tests below check both
//! on generated lines).

use std::borrow::Cow;

/// Deeper nesting is left to serde_json (whose own limit is 128).
const MAX_DEPTH: usize = 64;

/// The value of the last top-level key `field` of the JSON object `line` when it is a string
/// and the whole line passes the scanner (see the module documentation); `None` otherwise.
pub(super) fn text_field<'a>(line: &'a str, field: &str) -> Option<Cow<'a, str>> {
    let mut scan = Scanner { text: line, bytes: line.as_bytes(), at: 0 };
    scan.skip_whitespace();
    scan.eat(b'{')?;
    let mut text = None;
    scan.skip_whitespace();
    if scan.peek()? != b'}' {
        loop {
            scan.eat(b'"')?;
            let key = scan.string(Strings::Check)?;
            let Cow::Borrowed(key) = key else { return None }; // an escaped key
            scan.skip_whitespace();
            scan.eat(b':')?;
            scan.skip_whitespace();
            // Like Python's json.loads (and serde_json), the last of repeated keys wins; a value
            // that is not a string leaves the verdict to serde_json unless a string follows.
            if key == field && scan.peek()? == b'"' {
                scan.at += 1;
                text = Some(scan.string(Strings::Decode)?);
            } else {
                if key == field {
                    text = None;
                }
                scan.skip_value(1)?;
            }
            scan.skip_whitespace();
            match scan.next()? {
                b',' => scan.skip_whitespace(),
                b'}' => break,
                _ => return None,
            }
        }
    } else {
        scan.at += 1;
    }
    scan.skip_whitespace();
    if scan.at != scan.bytes.len() {
        return None;
    }
    text
}

/// What [`Scanner::string`] does with escapes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strings {
    /// Check them as serde_json does for keys and skipped values (any `\uXXXX` goes); the
    /// result is only told apart as borrowed (no escapes) or not.
    Check,
    /// Decode them; a surrogate escape that is not a high-low pair fails, as in serde_json.
    Decode,
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    fn eat_literal(&mut self, literal: &[u8]) -> Option<()> {
        let rest = self.bytes.get(self.at..)?;
        rest.starts_with(literal).then(|| self.at += literal.len())
    }

    /// JSON whitespace: space, tab, line feed, carriage return.
    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// After an opening quote: moves past the closing one and returns the string, borrowed when
    /// it has no escapes. Every escape is checked; a raw control character fails. With
    /// [`Strings::Check`] an escaped string comes back as an empty `Owned` marker.
    fn string(&mut self, mode: Strings) -> Option<Cow<'a, str>> {
        let start = self.at;
        let mut decoded: Option<String> = None;
        loop {
            let run = self.at;
            self.at = next_special(self.bytes, self.at);
            let special = self.next()?;
            if let Some(out) = decoded.as_mut().filter(|_| mode == Strings::Decode) {
                out.push_str(&self.text[run..self.at - 1]);
            }
            match special {
                b'"' => {
                    return Some(match decoded {
                        Some(out) => Cow::Owned(out),
                        None => Cow::Borrowed(&self.text[start..self.at - 1]),
                    });
                }
                b'\\' => {
                    let out = decoded.get_or_insert_with(|| match mode {
                        // Room for the rest of the line: one allocation, never a reallocation.
                        Strings::Decode => {
                            let mut out = String::with_capacity(self.bytes.len() - start);
                            out.push_str(&self.text[start..self.at - 1]);
                            out
                        }
                        Strings::Check => String::new(),
                    });
                    let c = self.escape(mode)?;
                    if mode == Strings::Decode {
                        out.push(c);
                    }
                }
                _ => return None, // a control character
            }
        }
    }

    /// After a backslash: the escaped character (with [`Strings::Check`], any character once
    /// the escape is checked).
    fn escape(&mut self, mode: Strings) -> Option<char> {
        Some(match self.next()? {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            quoted @ (b'"' | b'\\' | b'/') => quoted as char,
            b'u' => {
                let unit = self.hex4()?;
                match (mode, unit) {
                    (Strings::Check, _) => '\0',
                    (Strings::Decode, 0xD800..=0xDBFF) => {
                        self.eat_literal(b"\\u")?;
                        let low = self.hex4().filter(|low| (0xDC00..=0xDFFF).contains(low))?;
                        char::from_u32(0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00))?
                    }
                    (Strings::Decode, 0xDC00..=0xDFFF) => return None,
                    (Strings::Decode, _) => char::from_u32(u32::from(unit))?,
                }
            }
            _ => return None,
        })
    }

    /// The value of the next four hex digits.
    fn hex4(&mut self) -> Option<u16> {
        let digits = self.bytes.get(self.at..self.at + 4)?;
        self.at += 4;
        digits.iter().try_fold(0u16, |value, &d| Some(value << 4 | (d as char).to_digit(16)? as u16))
    }

    /// Moves past one value, checking it.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.string(Strings::Check).map(|_| ())
            }
            b'{' | b'[' => self.skip_container(depth + 1),
            b't' => self.eat_literal(b"true"),
            b'f' => self.eat_literal(b"false"),
            b'n' => self.eat_literal(b"null"),
            _ => self.skip_number(),
        }
    }

    fn skip_container(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let close = if self.next()? == b'{' { b'}' } else { b']' };
        self.skip_whitespace();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            if close == b'}' {
                self.eat(b'"')?;
                self.string(Strings::Check)?;
                self.skip_whitespace();
                self.eat(b':')?;
                self.skip_whitespace();
            }
            self.skip_value(depth)?;
            self.skip_whitespace();
            match self.next()? {
                b',' => self.skip_whitespace(),
                b if b == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn skip_number(&mut self) -> Option<()> {
        if self.peek()? == b'-' {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.skip_digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digit()?;
            self.skip_digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digit()?;
            self.skip_digits();
        }
        Some(())
    }

    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then_some(())
    }

    fn skip_digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }
}

/// The index of the first byte at or after `from` that is a quote, a backslash or a control
/// character (< 0x20), or `bytes.len()`.
#[inline]
fn next_special(bytes: &[u8], mut from: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        while let Some(chunk) = bytes.get(from..from + 16) {
            // SAFETY: SSE2 is part of the x86_64 baseline; the load reads the 16 bytes of `chunk`.
            let mask = unsafe {
                let v = _mm_loadu_si128(chunk.as_ptr().cast());
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                // v <= 0x1f, unsigned: min(v, 0x1f) == v.
                let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control))
            };
            if mask != 0 {
                return from + mask.trailing_zeros() as usize;
            }
            from += 16;
        }
    }
    bytes[from..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).map_or(bytes.len(), |i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::jsonl::parse_with_serde;

    /// The fast path either declines or agrees with serde_json.
    fn check(line: &str, field: &str) -> Option<String> {
        let fast = text_field(line, field).map(Cow::into_owned);
        if let Some(text) = &fast {
            assert_eq!(parse_with_serde(line, field).ok().as_deref(), Some(text.as_str()), "{line:?}");
        }
        fast
    }

    #[test]
    fn common_records_take_the_fast_path() {
        let t = |line: &str| check(line, "text");
        assert_eq!(t(r#"{"text": "plain"}"#).as_deref(), Some("plain"));
        assert_eq!(
            t(r#" {"id":1,"text":"a\nb \"q\" \\ \/ \u00e9 \ud83d\ude00","meta":{"x":[1,-2.5e+3,true,null,"}"]}} "#)
                .as_deref(),
            Some("a\nb \"q\" \\ / é 😀")
        );
        assert_eq!(t(r#"{"text":"first","text":"last"}"#).as_deref(), Some("last"));
        assert_eq!(t(r#"{"meta":{"text":"nested"},"text":"top"}"#).as_deref(), Some("top"));
        assert_eq!(t(r#"{"text":"\u0000\b\f\r\t"}"#).as_deref(), Some("\0\u{8}\u{c}\r\t"));
        assert_eq!(
            t("{\"text\":\"long enough to cross a sixteen-byte chunk boundary or two: é€😀\"}").as_deref(),
            Some("long enough to cross a sixteen-byte chunk boundary or two: é€😀")
        );
    }

    #[test]
    fn anything_unusual_is_left_to_serde() {
        for line in [
            r#"{"text": 5}"#,
            r#"{"text": null}"#,
            r#"{"other": "x"}"#,
            r#"{}"#,
            r#"["text"]"#,
            r#"{"te\u0078t": "escaped key"}"#,
            r#"{"text": "lone \ud800 surrogate"}"#,
            r#"{"text": "lone \udc00 low"}"#,
            r#"{"text": "x"} trailing"#,
            r#"{"text": "x",}"#,
            r#"{"text": "x" "y"}"#,
            r#"{"text": "unterminated}"#,
            r#"{"text": "bad \x escape"}"#,
            r#"{"text": "x", "n": 01}"#,
            r#"{"text": "x", "n": 1.}"#,
            r#"{"text": "x", "n": -}"#,
            r#"{"text": "x", "n": 1e}"#,
            r#"{"text": "x", "b": tru}"#,
            r#"{"text": "x", "a": [1,]}"#,
            r#"{"text": "x", "a": [1 2]}"#,
            "{\"text\": \"raw\ttab\"}",
            "{\"text\": \"a string long enough for whole chunks, then a unit separator \u{1f}\"}",
            "{\"text\": \"a string long enough for whole chunks, then a raw line feed \n here\"}",
        ] {
            assert_eq!(check(line, "text"), None, "{line:?}");
        }
        let nested = |depth: usize| format!(r#"{{"text": "x", "deep": {}1{}}}"#, "[".repeat(depth), "]".repeat(depth));
        assert_eq!(check(&nested(MAX_DEPTH - 1), "text").as_deref(), Some("x"));
        assert_eq!(check(&nested(MAX_DEPTH), "text"), None);
    }

    /// Random records built from fragments, some damaged: serde_json agrees wherever the fast path
    /// answers, and the fast path answers for nearly every record serde_json accepts.
    #[test]
    fn generated_lines_agree_with_serde() {
        let values = [
            r#""s""#,
            r#""\n\"\\\/\b\f\r\t""#,
            r#""\u00e9\ud83d\ude00""#,
            r#""\ud800""#,
            "0",
            "-0.5",
            "12e-3",
            "1E+9",
            "true",
            "false",
            "null",
            "[]",
            "{}",
            r#"[1,"a",{"k":[null]}]"#,
            r#"{"text":"inner"}"#,
            "[ 1 ,\t{ \"k\" :\r\n[ ] } , -0 ]",
            "{ }",
            "-12.5E-7",
            "1.",
            ".5",
            "-",
            "nul",
            r#""tab	inside""#,
            "é",
            "01",
            "+1",
        ];
        let texts = [
            r#""""#,
            r#""plain text""#,
            r#""line\nbreak \"quoted\"""#,
            r#""😀 \ud83d\ude00""#,
            r#""\u0041\u00e9""#,
            "7",
            "null",
            r#""\q""#,
            r#""\ud83d""#,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut fast, mut accepted) = (0, 0);
        for _ in 0..20_000 {
            let mut line = String::from(["{", " {", "{\t"][next(3)]);
            for i in 0..next(4) + 1 {
                if i > 0 {
                    line.push_str([",", " , "][next(2)]);
                }
                if next(3) == 0 {
                    line.push_str(&format!("\"text\":{}", texts[next(texts.len())]));
                } else {
                    line.push_str(&format!("\"k{i}\": {}", values[next(values.len())]));
                }
            }
            line.push_str(["}", "} ", "}\r"][next(3)]);
            let damaged = next(4) == 0;
            if damaged && !line.is_empty() {
                let at = next(line.len());
                if line.is_char_boundary(at) && line.is_char_boundary(at + 1) {
                    line.replace_range(at..at + 1, ["", "\"", "\\", ",", "}", "\u{1}", "\u{1f}"][next(7)]);
                }
            }
            accepted += usize::from(parse_with_serde(&line, "text").is_ok());
            fast += usize::from(check(&line, "text").is_some());
        }
        // Only damage declines valid records (an escape put into a key), and rarely.
        assert!(accepted > 2_000 && fast * 100 >= accepted * 97, "fast path {fast} of {accepted} valid records");
    }
}
