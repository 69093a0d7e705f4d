//! Brackets nested too deeply for regorus's parser. It reads each `[` and
//! `{` of an expression first as a comprehension and, when that fails, reads
//! it again as a literal, so every token inside `d` nested brackets is
//! parsed about `2^d` times: a 40-byte query of 22 nested `[` took 3 s, 26
//! took a minute, and regorus's own limit (32 levels) allows hours of one
//! core. OPA's parser is linear. So before any Rego text reaches regorus's
//! parser (a module loaded, written or bundled, an ad-hoc query), its
//! brackets are measured with regorus's lexer, which is linear, and a text
//! is refused as a parse error when
//! - brackets nest deeper than [`MAX_DEPTH`], or
//! - the parse would cost more than [`budget`]: the sum over tokens of
//!   `2^depth`, at most `2^22 + 64` per byte of text; ordinary policies
//!   stay far below it (every module of the default set is within 8 per
//!   byte, tested).

use anyhow::Result;
use regorus::unstable::{Lexer, Module, Parser, TokenKind};
use regorus::Source;

/// Parses a module (Rego v1 keywords on), once [`check`] lets it through.
pub fn parse_module(source: &Source) -> Result<Module> {
    check(source)?;
    let mut parser = Parser::new(source)?;
    parser.enable_rego_v1()?;
    parser.parse()
}

/// The deepest nesting of `[` and `{` accepted (rule bodies count).
pub const MAX_DEPTH: u32 = 20;

/// The parse cost allowed for a text of `len` bytes.
pub fn budget(len: usize) -> u64 {
    (1u64 << 22).saturating_add(64u64.saturating_mul(len as u64))
}

/// `Err` (regorus's error text, at the bracket where the limit was passed)
/// when `source` nests brackets too deeply to parse in reasonable time. A
/// text the lexer refuses is left to the parser, which reports the error.
pub fn check(source: &Source) -> Result<()> {
    within(source, budget(source.get_contents().len()))
}

/// [`check`] with a given budget.
fn within(source: &Source, budget: u64) -> Result<()> {
    let mut lexer = Lexer::new(source);
    let (mut depth, mut cost) = (0u32, 0u64);
    loop {
        let Ok(token) = lexer.next_token() else {
            return Ok(());
        };
        match (&token.0, token.1.text()) {
            (TokenKind::Eof, _) => return Ok(()),
            (TokenKind::Symbol, "[" | "{") => depth += 1,
            (TokenKind::Symbol, "]" | "}") => depth = depth.saturating_sub(1),
            _ => {}
        }
        cost = cost.saturating_add(1u64.checked_shl(depth).unwrap_or(u64::MAX));
        if depth > MAX_DEPTH || cost > budget {
            let span = &token.1;
            let message = match depth > MAX_DEPTH {
                true => format!(
                    "brackets nested too deeply: more than {MAX_DEPTH} levels of `[` and `{{`"
                ),
                false => {
                    "brackets nested too deeply: the text would take too long to parse".to_string()
                }
            };
            return Err(source.error(span.line, span.col, &message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(text: &str) -> Result<(), String> {
        let source = Source::from_contents("q.rego".into(), text.into()).unwrap();
        check(&source).map_err(|e| crate::policy::Diagnostic::from_regorus(&e).to_string())
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let nested = |n: usize| format!("x := {}1{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(checked(&nested(20)), Ok(()));
        assert_eq!(
            checked(&nested(21)),
            Err(
                "q.rego:1:26: brackets nested too deeply: more than 20 levels of `[` and `{`"
                    .into()
            )
        );
        // Unclosed, and objects.
        assert!(checked(&format!("x := {}", "[".repeat(40))).is_err());
        assert!(checked(&format!("x := {}", "{\"a\": ".repeat(40))).is_err());
        // Many expressions of 18 levels: each is allowed, not all of them.
        let many = vec![nested(18); 40].join("\n");
        assert_eq!(
            checked(&many),
            Err(
                "q.rego:5:21: brackets nested too deeply: the text would take too long to parse"
                    .into()
            )
        );
        // Strings and comments do not count.
        let quoted = format!("x := \"{}\" # {}", "[".repeat(40), "{".repeat(40));
        assert_eq!(checked(&quoted), Ok(()));
    }

    #[test]
    fn the_default_policies_are_far_below_the_budget() {
        let sources = crate::policy::Sources::embedded_default().unwrap();
        for module in &sources.modules {
            let source = Source::from_contents(module.id.clone(), module.text.clone()).unwrap();
            let tight = 8 * module.text.len() as u64;
            assert!(within(&source, tight).is_ok(), "{}", module.id);
        }
    }
}
