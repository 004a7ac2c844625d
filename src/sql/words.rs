//! Matching pitlake's statement words (`FEATURE GROUP`, `ROW FILTER`, …),
//! which are not sqlparser keywords: unquoted, in any case.

use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// True when the next tokens are `words`; the parser does not move.
pub(super) fn peek_words(parser: &Parser, words: &[&str]) -> bool {
    words.iter().enumerate().all(|(n, word)| {
        matches!(&parser.peek_nth_token_ref(n).token,
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    })
}

/// Takes `words` when they are next; true if it did.
pub(super) fn take_words(parser: &mut Parser, words: &[&str]) -> bool {
    let found = peek_words(parser, words);
    if found {
        for _ in words {
            parser.next_token();
        }
    }
    found
}

/// Takes `words`, one after another, or says which one was expected.
pub(super) fn expect_words(parser: &mut Parser, words: &[&str]) -> Result<(), ParserError> {
    for word in words {
        if !take_words(parser, &[word]) {
            return parser.expected(word, parser.peek_token());
        }
    }
    Ok(())
}

/// The position of the token after the (possibly dotted) name that starts
/// `prefix` tokens ahead; None when no name is there. The parser does not
/// move.
pub(super) fn after_name(parser: &Parser, prefix: usize) -> Option<usize> {
    let is_word = |n: usize| matches!(parser.peek_nth_token_ref(n).token, Token::Word(_));
    let mut n = prefix;
    if !is_word(n) {
        return None;
    }
    n += 1;
    while parser.peek_nth_token_ref(n).token == Token::Period {
        if !is_word(n + 1) {
            return None;
        }
        n += 2;
    }
    Some(n)
}

/// True when the tokens `n` ahead are `words`; the parser does not move.
pub(super) fn words_at(parser: &Parser, n: usize, words: &[&str]) -> bool {
    words.iter().enumerate().all(|(i, word)| {
        matches!(&parser.peek_nth_token_ref(n + i).token,
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    })
}
