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
