//! Rego nested too deeply for regorus.
//!
//! **Brackets.** regorus's parser reads each `[` and
//! `{` of an expression first as a comprehension and, when that fails, reads
//! it again as a literal, so the first term of a bracket (up to its first
//! `,`; an object's first value included; a comprehension's term can be
//! read three times) is parsed again per level: `[[[...]]]` and
//! `{"a": {"a": ...}}` cost about `2^d`, comprehensions up to `3^d`. A
//! 40-byte query of 22 nested `[` took 3 s, 26 took a minute, and
//! regorus's own limit (32 levels) allows hours of one core. OPA's parser is linear. So before any
//! Rego text reaches regorus's parser (a module loaded, written or bundled,
//! an ad-hoc query), its brackets are measured with regorus's lexer, which
//! is linear, and a text is refused as a parse error when the parse would
//! cost more than [`budget`]: the sum over tokens of `3^r`, `r` the number
//! of enclosing brackets still in their first term, at most `2^22 + 64` per
//! byte of text (regorus takes at most 1 MiB). That allows `[` nested 13
//! deep in a short text, 16 in the largest. Ordinary policies, JSON-like
//! literals included, stay far below it (every module of the default set
//! and of its generated tests is within 6 per byte; tested at 16).
//!
//! **Expressions.** A chain of operators (`1 + 1 + ... + 1`, one per line)
//! parses fine but makes a tree as deep as the chain, and regorus's
//! analysis, compiler and interpreter walk trees recursively: 20,000 terms
//! (80 KB) overflowed the stack and aborted the process. So a parsed module
//! or query whose expressions nest deeper than [`MAX_EXPR_DEPTH`] is refused
//! too, measured without recursion.

use anyhow::Result;
use regorus::unstable::{Expr, Lexer, Literal, Module, Parser, Query, Rule, RuleHead, TokenKind};
use regorus::Source;

use super::fold::ast::{children, comprehension_query, head_ref};

/// The deepest expression tree accepted (statements and comprehensions
/// count as levels).
pub const MAX_EXPR_DEPTH: usize = 1000;

/// Parses a module (Rego v1 keywords on), once [`check`] lets it through,
/// and checks its depth.
pub fn parse_module(source: &Source) -> Result<Module> {
    check(source)?;
    let mut parser = Parser::new(source)?;
    parser.enable_rego_v1()?;
    let module = parser.parse()?;
    let checked = check_module_depth(&module);
    kept_if_shallow(module, checked)
}

/// `value` when `checked` passed; else the error, and `value` is leaked:
/// regorus frees its trees recursively, and one deep enough to be refused
/// could overflow the stack being freed. (The token bound refuses such
/// texts before they are parsed; this is the backstop.)
pub fn kept_if_shallow<T>(value: T, checked: Result<()>) -> Result<T> {
    match checked {
        Ok(()) => Ok(value),
        Err(err) => {
            std::mem::forget(value);
            Err(err)
        }
    }
}

/// Parses an ad-hoc query as [`parse_module`] parses a module, after the
/// stricter [`check_query`].
pub fn parse_query(source: &Source) -> Result<regorus::unstable::Ref<Query>> {
    check(source)?;
    check_query(source)?;
    let mut parser = Parser::new(source)?;
    parser.enable_rego_v1()?;
    let query = parser.parse_user_query()?;
    let checked = check_depth(vec![(Node::Query(&query), 0)]);
    kept_if_shallow(query, checked)
}

/// `Err` at the first expression deeper than [`MAX_EXPR_DEPTH`].
pub fn check_module_depth(module: &Module) -> Result<()> {
    module
        .policy
        .iter()
        .try_for_each(|rule| check_depth(roots(rule)))
}

/// How deep the expressions of `rule` nest (0 for a rule without any),
/// or `None` when deeper than [`MAX_EXPR_DEPTH`].
pub fn rule_depth(rule: &Rule) -> Option<usize> {
    deepest(roots(rule)).ok()
}

/// Where the walk of a rule starts: its head, values, arguments, bodies.
fn roots(rule: &Rule) -> Vec<(Node<'_>, usize)> {
    let mut roots = vec![(Node::Expr(head_ref(rule)), 0)];
    match rule {
        Rule::Spec { head, bodies, .. } => {
            match head {
                RuleHead::Compr { assign, .. } => {
                    roots.extend(assign.iter().map(|a| (Node::Expr(&a.value), 0)));
                }
                RuleHead::Func { assign, args, .. } => {
                    roots.extend(assign.iter().map(|a| (Node::Expr(&a.value), 0)));
                    roots.extend(args.iter().map(|a| (Node::Expr(a), 0)));
                }
                RuleHead::Set { key, .. } => roots.extend(key.iter().map(|k| (Node::Expr(k), 0))),
            }
            for body in bodies {
                roots.extend(body.assign.iter().map(|a| (Node::Expr(&a.value), 0)));
                roots.push((Node::Query(&body.query), 0));
            }
        }
        Rule::Default { args, value, .. } => {
            roots.extend(args.iter().map(|a| (Node::Expr(a), 0)));
            roots.push((Node::Expr(value), 0));
        }
    }
    roots
}

enum Node<'a> {
    Expr(&'a Expr),
    Query(&'a Query),
}

/// `Err` at the first expression deeper than [`MAX_EXPR_DEPTH`].
fn check_depth(roots: Vec<(Node, usize)>) -> Result<()> {
    deepest(roots).map(|_| ()).map_err(|span| {
        let message = format!("expression nested too deeply: more than {MAX_EXPR_DEPTH} levels");
        span.source.error(span.line, span.col, &message)
    })
}

/// The deepest level below `roots`, walked with an explicit stack; `Err`
/// with the first expression deeper than [`MAX_EXPR_DEPTH`].
fn deepest(mut stack: Vec<(Node, usize)>) -> Result<usize, regorus::unstable::Span> {
    let mut deepest = 0;
    while let Some((node, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        let expr = match node {
            Node::Expr(expr) => expr,
            Node::Query(query) => {
                for stmt in &query.stmts {
                    for modifier in &stmt.with_mods {
                        stack.push((Node::Expr(&modifier.refr), depth + 1));
                        stack.push((Node::Expr(&modifier.r#as), depth + 1));
                    }
                    match &stmt.literal {
                        Literal::SomeVars { .. } => {}
                        Literal::SomeIn {
                            key,
                            value,
                            collection,
                            ..
                        } => {
                            stack.extend(key.iter().map(|k| (Node::Expr(k), depth + 1)));
                            stack.push((Node::Expr(value), depth + 1));
                            stack.push((Node::Expr(collection), depth + 1));
                        }
                        Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => {
                            stack.push((Node::Expr(expr), depth + 1))
                        }
                        Literal::Every { domain, query, .. } => {
                            stack.push((Node::Expr(domain), depth + 1));
                            stack.push((Node::Query(query), depth + 1));
                        }
                    }
                }
                continue;
            }
        };
        if depth > MAX_EXPR_DEPTH {
            return Err(expr.span().clone());
        }
        stack.extend(
            children(expr)
                .into_iter()
                .map(|c| (Node::Expr(c), depth + 1)),
        );
        if let Some(query) = comprehension_query(expr) {
            stack.push((Node::Query(query), depth + 1));
        }
    }
    Ok(deepest)
}

/// The parse cost an ad-hoc query may have (see [`check_query`]).
pub const QUERY_BUDGET: u64 = 1 << 20;

/// The links an ad-hoc query may have.
pub const QUERY_LINKS: usize = 1000;

/// For ad-hoc queries, which any client of the API may send, bounds that
/// hold whatever regorus's parser does, not a model of it: every opening
/// `[`, `{`, `(` (and `set(`, one token) counts as a level, never undone by
/// a comma, and each token costs `4^levels` (at most [`QUERY_BUDGET`]: 9
/// levels for a short query); and every token that can deepen the tree (an
/// operator, `-`, `.`, `not`, `in`, `with`, an opening bracket) counts as a
/// link, in the whole query (at most [`QUERY_LINKS`]). Policies are
/// trusted text, as in OPA's security model, and get [`check`]'s model
/// instead, which accepts large JSON-like literals.
pub fn check_query(source: &Source) -> Result<()> {
    let mut lexer = Lexer::new(source);
    let (mut levels, mut cost, mut links) = (0u32, 0u64, 0usize);
    loop {
        let Ok(token) = lexer.next_token() else {
            return Ok(());
        };
        let text = token.1.text();
        let symbol = matches!(token.0, TokenKind::Symbol);
        if matches!(token.0, TokenKind::Eof) {
            return Ok(());
        }
        let opens = (symbol && matches!(text, "[" | "{" | "(")) || text.ends_with('(');
        if opens {
            levels += 1;
        }
        cost = cost.saturating_add(4u64.checked_pow(levels).unwrap_or(u64::MAX));
        let deepens = opens
            || (symbol && (is_operator(text) || text == "."))
            || matches!(text, "not" | "in" | "with")
            || (matches!(token.0, TokenKind::Number) && text.starts_with('-'));
        links += usize::from(deepens);
        if symbol && matches!(text, "]" | "}" | ")") {
            levels = levels.saturating_sub(1);
        }
        let message = if cost > QUERY_BUDGET {
            "brackets nested too deeply: the query would take too long to parse".to_string()
        } else if links > QUERY_LINKS {
            format!("expression nested too deeply: more than {QUERY_LINKS} operators in a query")
        } else {
            continue;
        };
        let span = &token.1;
        return Err(source.error(span.line, span.col, &message));
    }
}

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
    let mut cost = 0u64;
    let mut open: Vec<Open> = Vec::new();
    let mut chains = Chains::default();
    loop {
        let Ok(token) = lexer.next_token() else {
            return Ok(());
        };
        match (&token.0, token.1.text()) {
            (TokenKind::Eof, _) => return Ok(()),
            (TokenKind::Symbol, "[" | "{") => open.push(Open::Bracket {
                first: true,
                comprehension: false,
            }),
            (TokenKind::Symbol, "(") | (TokenKind::Ident, "set(") => open.push(Open::Paren),
            (TokenKind::Symbol, "]" | "}" | ")") => {
                open.pop();
            }
            (TokenKind::Symbol, "|") => {
                if let Some(Open::Bracket {
                    first,
                    comprehension,
                }) = open.last_mut()
                {
                    (*first, *comprehension) = (true, true);
                }
            }
            (TokenKind::Symbol, ",") => {
                if let Some(Open::Bracket {
                    first,
                    comprehension: false,
                }) = open.last_mut()
                {
                    *first = false;
                }
            }
            _ => {}
        }
        let rereads = open
            .iter()
            .filter(|o| matches!(o, Open::Bracket { first: true, .. }))
            .count() as u32;
        cost = cost.saturating_add(3u64.checked_pow(rereads).unwrap_or(u64::MAX));
        let message = if cost > budget {
            "brackets nested too deeply: the text would take too long to parse".to_string()
        } else if chains.step(&token) > MAX_EXPR_DEPTH {
            format!("expression nested too deeply: more than {MAX_EXPR_DEPTH} levels")
        } else {
            continue;
        };
        let span = &token.1;
        return Err(source.error(span.line, span.col, &message));
    }
}

/// An open bracket, for [`within`]'s cost.
enum Open {
    /// `(` or `set(`: read once.
    Paren,
    /// `[` or `{`: regorus reads its first term again (up to its first
    /// `,`) when its comprehension attempt fails, and all of it once it
    /// holds a `|` (a comprehension's body, whatever commas it holds).
    Bracket { first: bool, comprehension: bool },
}

/// A bound on the depth of the expression tree being lexed: per open
/// bracket, the links of the chain in progress there (operators, `.field`,
/// `[index]`), each of which nests the tree one level deeper. A chain ends
/// at `,` or `;` and where a line does not continue the previous one (which
/// ends in an operator or an opening bracket). Conservative: precedence
/// only makes trees shallower.
#[derive(Default)]
struct Chains {
    /// Links per open bracket, the outermost first (the text itself at 0).
    links: Vec<usize>,
    /// The previous token.
    previous: Option<Previous>,
}

/// What [`Chains`] keeps of the previous token.
struct Previous {
    line: u32,
    /// An opening bracket, `,` or `;`: what follows starts a chain.
    opens: bool,
    /// An operator, `.` or `in`: what follows continues the chain.
    operator: bool,
    dot: bool,
}

impl Chains {
    /// Takes the next token; returns the bound.
    fn step(&mut self, token: &regorus::unstable::Token) -> usize {
        if self.links.is_empty() {
            self.links.push(0);
        }
        let text = token.1.text();
        let symbol = matches!(token.0, TokenKind::Symbol);
        // regorus reads `-1` as one number, and `a -1` as a subtraction.
        let negative = matches!(token.0, TokenKind::Number) && text.starts_with('-');
        // A token that continues an expression from the line before: the
        // parser reads operators across line breaks.
        // (`f` and its `(` may sit on two lines.)
        let leads = (symbol && (is_operator(text) || matches!(text, "." | "(")))
            || text == "in"
            || negative;
        let (continues, after_value) = match &self.previous {
            Some(prev) => (
                prev.line == token.1.line || prev.operator || prev.opens || leads,
                !prev.opens && !prev.operator,
            ),
            None => (false, false),
        };
        let current = self.links.len() - 1;
        if !continues {
            self.links[current] = 0;
        }
        if negative && after_value {
            self.links[current] += 1;
        }
        let ident = matches!(token.0, TokenKind::Ident);
        match text {
            "set(" if ident => self.links.push(0),
            "[" | "{" | "(" if symbol => {
                // `x[i]` and `f(x)` extend the chain they follow.
                if after_value && text != "{" {
                    self.links[current] += 1;
                }
                self.links.push(0);
            }
            "]" | "}" | ")" if symbol && self.links.len() > 1 => {
                self.links.pop();
            }
            "," | ";" if symbol => self.links[current] = 0,
            // An `else` branch is a body of its own, not part of a chain
            // (the keyword, not a string or a field named so).
            "else" if ident && !matches!(&self.previous, Some(p) if p.dot) => {
                self.links[current] = 0
            }
            _ if (symbol && (is_operator(text) || text == ".")) || text == "in" => {
                self.links[current] += 1
            }
            _ => {}
        }
        self.previous = Some(Previous {
            line: token.1.line,
            opens: matches!(text, "[" | "{" | "(" | "," | ";"),
            operator: is_operator(text) || text == "." || text == "in",
            dot: text == ".",
        });
        self.links.iter().sum::<usize>() + self.links.len()
    }
}

/// Binary operators and assignments (each makes a tree node).
fn is_operator(text: &str) -> bool {
    matches!(
        text,
        "+" | "-"
            | "*"
            | "/"
            | "%"
            | "&"
            | "|"
            | "=="
            | "!="
            | "<"
            | ">"
            | "<="
            | ">="
            | "="
            | ":="
    )
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
        assert_eq!(checked(&nested(12)), Ok(()));
        let err = checked(&nested(14)).unwrap_err();
        assert!(
            err.ends_with("the text would take too long to parse"),
            "{err}"
        );
        // After a first `,`, a bracket is read once: no limit but the chain's.
        let second = format!("x := {}1{}", "[1, ".repeat(200), "]".repeat(200));
        assert_eq!(checked(&second), Ok(()));
        // A comprehension's term is read three times per level.
        let terms = format!("y := {}1{}", "[x | ".repeat(18), ", 1]".repeat(18));
        assert!(checked(&terms).is_err());
        // Unclosed, and objects.
        assert!(checked(&format!("x := {}", "[".repeat(40))).is_err());
        assert!(checked(&format!("x := {}", "{\"a\": ".repeat(40))).is_err());
        // Many expressions of 11 levels: each is allowed, not all of them.
        let many = vec![nested(11); 200].join("\n");
        let err = checked(&many).unwrap_err();
        assert!(
            err.ends_with("the text would take too long to parse"),
            "{err}"
        );
        // Strings and comments do not count.
        let quoted = format!("x := \"{}\" # {}", "[".repeat(40), "{".repeat(40));
        assert_eq!(checked(&quoted), Ok(()));
    }

    #[test]
    fn operator_chains_deeper_than_the_limit_are_refused() {
        let chain = |n: usize| {
            let terms = vec!["1"; n].join(" +\n");
            let text = format!("package p\nimport rego.v1\nx := {terms}\n");
            let source = Source::from_contents("p.rego".into(), text).unwrap();
            parse_module(&source)
                .map(|_| ())
                .map_err(|e| crate::policy::Diagnostic::from_regorus(&e).to_string())
        };
        assert_eq!(chain(900), Ok(()));
        let err = chain(5000).unwrap_err();
        assert!(
            err.ends_with("expression nested too deeply: more than 1000 levels"),
            "{err}"
        );
        // Lines that start with the operator, and `-1` read as one number.
        let leading = format!("package p\nx := 1\n{}\n", "\t+ 1\n".repeat(5000));
        let lexed = |text: String| check(&Source::from_contents("p.rego".into(), text).unwrap());
        assert!(lexed(leading).is_err());
        let chained = format!(
            "package p\nx := 0{}\n",
            vec!["-1".repeat(400); 4].join("\n")
        );
        assert!(lexed(chained).is_err());
        // A long `else` chain is a list, not a nest.
        let branches = "\telse := 1 if input.b\n".repeat(1500);
        let text = format!("package p\nimport rego.v1\nx := 0 if input.a\n{branches}");
        assert!(lexed(text).is_ok());
        // Reference chains nest as deeply.
        for link in [".a", "[0]", "[\"k\"]"] {
            let text = format!("package p\nx := input{}\n", link.repeat(3000));
            let source = Source::from_contents("p.rego".into(), text).unwrap();
            assert!(parse_module(&source).is_err(), "{link}");
        }
        // Many short statements are not one chain.
        let text = format!(
            "package p\nimport rego.v1\nx if {{\n{}}}\n",
            "\tinput.a.b == 1 + 2\n".repeat(3000)
        );
        let source = Source::from_contents("p.rego".into(), text).unwrap();
        assert!(parse_module(&source).is_ok());
        // Queries too, and inside comprehensions.
        let query = format!("x := [y | y := {}]", vec!["1"; 5000].join(" +\n"));
        let source = Source::from_contents(String::new(), query).unwrap();
        assert!(parse_query(&source).is_err());
        let source = Source::from_contents(String::new(), "x := [y | y := 1 + 2]".into()).unwrap();
        assert!(parse_query(&source).is_ok());
    }

    /// Shapes a review found that passed the first version of the checks.
    #[test]
    fn shapes_that_slipped_past_are_refused() {
        let lexed = |text: String| check(&Source::from_contents("p.rego".into(), text).unwrap());
        // The string "else" or a field named so is no `else` branch.
        let minus = format!("package p\nx := {}1\n", "-\"else\" +\n".repeat(3000));
        assert!(lexed(minus).is_err());
        // `f` and its `(` on two lines still make a call.
        let calls = format!(
            "package p\nx := {}1{}\n",
            "-f\n(".repeat(600),
            ")".repeat(600)
        );
        assert!(lexed(calls).is_err());
        // `set(` is one token, and opens.
        let sets = format!(
            "package p\nx := {}1{}\n",
            "[set(),\n".repeat(3000),
            "]".repeat(3000)
        );
        assert!(lexed(sets).is_err());
        // A comprehension's body is read again whatever commas it holds.
        for shape in [
            "[a | k,\nv in L, 1]",
            "[a | some k, v in xs\nL == 1]",
            "[f(set(),\nL)]",
        ] {
            let mut text = "1".to_string();
            for _ in 0..40 {
                text = shape.replace('L', &text);
            }
            assert!(
                lexed(format!("package p\nx := {text}\n")).is_err(),
                "{shape}"
            );
            let source = Source::from_contents(String::new(), format!("x := {text}")).unwrap();
            assert!(parse_query(&source).is_err(), "{shape}");
        }
    }

    #[test]
    fn queries_are_bounded_whatever_the_parser_does() {
        let query =
            |text: &str| check_query(&Source::from_contents(String::new(), text.into()).unwrap());
        assert!(query("data.p.allow; x := [y | some y in input.ys; y > 1]").is_ok());
        assert!(query(&format!("x := {}1{}", "(".repeat(12), ")".repeat(12))).is_err());
        assert!(query(&format!("x := {}1", "1 +\n".repeat(1100))).is_err());
        assert!(query(&"x := 1 + 2 + 3\n".repeat(100)).is_ok());
    }

    #[test]
    fn the_default_policies_are_far_below_the_budget() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
        let sources = crate::policy::Sources::load_paths(&[dir]).unwrap();
        assert!(sources.modules.iter().any(|m| m.id.contains("_test")));
        for module in &sources.modules {
            let source = Source::from_contents(module.id.clone(), module.text.clone()).unwrap();
            let tight = 16 * module.text.len() as u64;
            assert!(within(&source, tight).is_ok(), "{}", module.id);
        }
    }
}
