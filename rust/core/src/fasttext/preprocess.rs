//! What happens to a text before fastText's tokeniser sees it.
//!
//! fastText's Python wrapper predicts one line at a time: it refuses a `\n` and appends one,
//! so every prediction sees the text's tokens followed by `</s>`. The pipelines that use
//! fastText classifiers deal with newlines first, each in its own way; [`Preprocess`] names
//! them so that scores match theirs exactly:
//!
//! | policy | text fastText sees | used by |
//! |---|---|---|
//! | `newline: Error` | the text; a `\n` is an error | fastText itself |
//! | `newline: Space` | `text.replace("\n", " ")` | PreSelect training data, datatrove's language id |
//! | `newline: Remove` | `text.replace("\n", "")` | datatrove's classifier filter (with `strip`), DCLM's language id |
//! | `newline: SplitLines` | `" ".join(text.strip().splitlines())` | DCLM's quality classifier |
//!
//! `strip` applies Python's `str.strip()` first (Unicode whitespace plus U+001C..U+001F).

use std::borrow::Cow;

use crate::error::{Error, Result};

/// How newlines reach the tokeniser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Newline {
    /// A `\n` is an error, as in fastText's `predict`.
    Error,
    /// Each `\n` becomes a space (a plain separator).
    Space,
    /// Each `\n` is deleted, gluing the words around it.
    Remove,
    /// Python's `" ".join(text.strip().splitlines())`.
    SplitLines,
}

impl Newline {
    /// Parses `"error"`, `" "`, `""` or `"splitlines"`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "error" => Ok(Newline::Error),
            " " => Ok(Newline::Space),
            "" => Ok(Newline::Remove),
            "splitlines" => Ok(Newline::SplitLines),
            other => {
                Err(Error::invalid(format!("newline must be \"error\", \" \", \"\" or \"splitlines\", got {other:?}")))
            }
        }
    }
}

/// The preprocessing of a text before tokenisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preprocess {
    pub newline: Newline,
    /// Python's `str.strip()` first.
    pub strip: bool,
}

impl Default for Preprocess {
    /// fastText's behaviour: no stripping, a newline is an error.
    fn default() -> Self {
        Preprocess { newline: Newline::Error, strip: false }
    }
}

/// Python's `str.isspace()`: Unicode White_Space plus the information separators U+001C..U+001F.
fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Line boundaries of Python's `str.splitlines()` that are not fastText separators already.
fn extra_line_boundary(c: char) -> bool {
    matches!(c, '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// A text held a newline under [`Newline::Error`].
#[derive(Debug)]
pub struct NewlineFound;

impl Preprocess {
    /// The text the tokeniser sees. Splitting it on fastText's separators gives the tokens of
    /// the policy's text (runs of separators collapse, so a line break that becomes a space is
    /// the same as a separator).
    pub fn apply<'a>(&self, text: &'a str) -> std::result::Result<Cow<'a, str>, NewlineFound> {
        let text =
            if self.strip || self.newline == Newline::SplitLines { text.trim_matches(python_space) } else { text };
        match self.newline {
            Newline::Error if text.as_bytes().contains(&b'\n') => Err(NewlineFound),
            Newline::Error | Newline::Space => Ok(Cow::Borrowed(text)),
            Newline::Remove => Ok(if text.as_bytes().contains(&b'\n') {
                Cow::Owned(text.replace('\n', ""))
            } else {
                Cow::Borrowed(text)
            }),
            Newline::SplitLines => Ok(if text.chars().any(extra_line_boundary) {
                Cow::Owned(text.chars().map(|c| if extra_line_boundary(c) { ' ' } else { c }).collect())
            } else {
                Cow::Borrowed(text)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(newline: Newline, strip: bool, text: &str) -> String {
        Preprocess { newline, strip }.apply(text).map(|t| t.into_owned()).unwrap_or_else(|_| "<error>".into())
    }

    #[test]
    fn policies_match_the_pipelines() {
        assert_eq!(seen(Newline::Error, false, "a\nb"), "<error>");
        assert_eq!(seen(Newline::Error, true, "a b\n"), "a b");
        assert_eq!(seen(Newline::Space, false, "a\nb"), "a\nb");
        assert_eq!(seen(Newline::Remove, false, "end\nNext"), "endNext");
        assert_eq!(seen(Newline::Remove, true, "\u{a0}x\ny\u{2029}"), "xy");
        assert_eq!(seen(Newline::SplitLines, false, " a\u{2028}b\u{1c}c\u{85}d\r\ne "), "a b c d\r\ne");
        assert_eq!(seen(Newline::SplitLines, false, "\u{1f}a\u{1f}b "), "a\u{1f}b");
        assert!(Newline::from_name("x").is_err());
    }
}
