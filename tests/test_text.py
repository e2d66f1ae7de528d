"""Text → words: the Rust tokenizers against small Python references."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings

from reference_impl import whitespace_tokens, wordpunct_tokens
from strategies import texts
from tokensieve.exceptions import InvalidArgumentError
from tokensieve.features import tokenize


@given(texts)
@settings(max_examples=400, deadline=None)
@example("Don't stop $3.88 --- x² e\u0301té a\x1cb İstanbul ΟΔΟΣ.")
def test_wordpunct_matches_nltk_regex_semantics(text: str) -> None:
    assert tokenize(text, "wordpunct") == wordpunct_tokens(text, lowercase=True)
    assert tokenize(text, "wordpunct", lowercase=False) == wordpunct_tokens(text, lowercase=False)


@given(texts)
@settings(max_examples=300, deadline=None)
@example("Hello  World\n\tx\x00y\x0bz\x0cw\r a\xa0b")
def test_whitespace_matches_fasttext_split(text: str) -> None:
    assert tokenize(text, "whitespace") == whitespace_tokens(text)
    assert tokenize(text, "whitespace", lowercase=True) == whitespace_tokens(text, lowercase=True)


def test_wordpunct_matches_installed_nltk_on_real_text(corpus_slice: list[str]) -> None:
    nltk_tokenize = pytest.importorskip("nltk.tokenize")
    wpt = nltk_tokenize.WordPunctTokenizer()
    for text in corpus_slice:
        assert tokenize(text) == wpt.tokenize(text.lower())


def test_documented_differences_from_old_nltk() -> None:
    # nltk <= 3.10.2 (stdlib `re`) kept "x²" whole and split before combining marks; we follow
    # the `regex` module of nltk >= 3.10.3.
    assert tokenize("x²") == ["x", "²"]
    assert tokenize("e\u0301") == ["e\u0301"]
    assert tokenize("a\x1cb") == ["a", "\x1c", "b"]


def test_unknown_tokenizer_is_a_typed_error() -> None:
    with pytest.raises(InvalidArgumentError, match="unknown tokenizer"):
        tokenize("x", "bpe")  # type: ignore[arg-type]
