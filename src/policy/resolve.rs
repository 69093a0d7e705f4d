//! Import resolution: rewrites references through an imported package
//! (`import data.utils` then `utils.is_admin`) into absolute references
//! (`data.utils.is_admin`) before a module reaches regorus.
//!
//! Why: regorus resolves `utils.X` by evaluating the whole `data.utils`
//! document and indexing `X` into it, so every such reference costs a pass over
//! every rule of the package (the interpreter caches it per decision; the RVM
//! rebuilds it per reference). `data.utils.X` is looked up directly. OPA's
//! compiler makes the same rewrite. The meaning is unchanged: an import alias
//! is exactly a name for its target reference.
//!
//! The rewrite is textual, driven by regorus's own lexer and parser, so
//! strings, comments and `x.utils` (a field, not the alias) are untouched.
//! Line numbers do not change; columns after a rewritten alias shift right.

use anyhow::Result;
use std::collections::HashSet;

use regorus::unstable::{Lexer, Parser, Span, Token, TokenKind};
use regorus::Source;

/// Every token of `source`, in order (the end-of-file token left out).
pub(super) fn tokens(source: &Source) -> Result<Vec<Token>> {
    let mut lexer = Lexer::new(source);
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        if matches!(token.0, TokenKind::Eof) {
            return Ok(tokens);
        }
        tokens.push(token);
    }
}

/// Returns `text` with every reference through a `data` import made
/// absolute, or `None` when there is nothing to rewrite (or the module does
/// not parse: the caller reports the error from the original text).
pub fn resolve_imports(id: &str, text: &str) -> Result<Option<String>> {
    let Ok(source) = Source::from_contents(id.to_string(), text.to_string()) else {
        return Ok(None);
    };
    // Too deeply nested for regorus: refused here, before its parser
    // (brackets) and its analysis (expressions).
    super::nesting::check(&source)?;
    let Ok(module) = Parser::new(&source).and_then(|mut p| {
        p.enable_rego_v1()?;
        p.parse()
    }) else {
        return Ok(None);
    };
    let checked = super::nesting::check_module_depth(&module);
    let module = super::nesting::kept_if_shallow(module, checked)?;
    // alias -> target text.
    let mut aliases: Vec<(String, String)> = Vec::new();
    for import in &module.imports {
        let target = import.refr.span().text().to_string();
        if !target.starts_with("data.") && target != "data" {
            continue;
        }
        let alias = match &import.r#as {
            Some(alias) => alias.text().to_string(),
            None => match target.rsplit('.').next() {
                Some(last) if !last.contains(['[', ']', '"']) => last.to_string(),
                _ => continue,
            },
        };
        aliases.push((alias, target));
    }
    if aliases.is_empty() {
        return Ok(None);
    }

    // Where rules are: only references inside a rule are rewritten (never
    // the package line, whose first segment can be an alias's name).
    let rules: Vec<(u32, u32)> = module
        .policy
        .iter()
        .map(|rule| (rule.span().start, rule.span().end))
        .collect();
    let tokens = tokens(&source)?;
    let rule_of = |at: u32| rules.iter().position(|&(s, e)| at >= s && at < e);
    // Every alias occurrence: an identifier named like an alias, not a
    // field (`x.utils`), inside a rule; with its rule, its target, and
    // whether it is a reference through the alias (`utils.x`, `utils[k]`).
    let occurrences: Vec<(&Span, usize, &str, bool)> = tokens
        .iter()
        .enumerate()
        .filter_map(|(i, Token(kind, span))| {
            let after_dot = i > 0 && tokens[i - 1].1.text() == ".";
            if !matches!(kind, TokenKind::Ident) || after_dot {
                return None;
            }
            let (_, target) = aliases.iter().find(|(a, _)| a == span.text())?;
            let rule = rule_of(span.start)?;
            let next = tokens.get(i + 1).map(|t| t.1.text());
            Some((
                span,
                rule,
                target.as_str(),
                matches!(next, Some(".") | Some("[")),
            ))
        })
        .collect();
    // A rule where an alias's name also stands alone (`f(utils)`,
    // `some utils in xs`, `utils := 1`, `every utils in xs`) may declare a
    // local variable of that name, which shadows the import in OPA: such a
    // rule is left as written for that alias (regorus resolves it then).
    let shadowed: HashSet<(usize, &str)> = occurrences
        .iter()
        .filter(|&&(_, _, _, reference)| !reference)
        .map(|&(_, rule, target, _)| (rule, target))
        .collect();
    let edits: Vec<(usize, usize, &str)> = occurrences
        .iter()
        .filter(|&&(_, rule, target, reference)| reference && !shadowed.contains(&(rule, target)))
        .map(|&(span, _, target, _)| (span.start as usize, span.end as usize, target))
        .collect();
    if edits.is_empty() {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len() + edits.len() * 8);
    let mut at = 0;
    for (start, end, target) in edits {
        out.push_str(&text[at..start]);
        out.push_str(target);
        at = end;
    }
    out.push_str(&text[at..]);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_references_become_absolute() {
        let text = "package p\nimport rego.v1\nimport data.utils\nimport data.lib.x as y\n\nallow if {\n\tutils.is_admin\n\ty.z(1)\n\tinput.utils == \"utils\" # utils\n}\n";
        let out = resolve_imports("p.rego", text).unwrap().unwrap();
        assert_eq!(
            out,
            "package p\nimport rego.v1\nimport data.utils\nimport data.lib.x as y\n\nallow if {\n\tdata.utils.is_admin\n\tdata.lib.x.z(1)\n\tinput.utils == \"utils\" # utils\n}\n"
        );
    }

    #[test]
    fn modules_without_data_imports_are_left_alone() {
        assert_eq!(
            resolve_imports("p.rego", "package p\nimport rego.v1\nx := 1\n").unwrap(),
            None
        );
        assert_eq!(
            resolve_imports("p.rego", "package p\nimport input.user\nx := user\n").unwrap(),
            None
        );
    }

    /// A local variable named like an alias shadows the import in OPA
    /// (function arguments, `some`, `every`, `:=`): a rule that may declare
    /// one keeps the alias as written; the other rules are still rewritten.
    #[test]
    fn rules_that_may_shadow_an_alias_are_left_as_written() {
        let text = "package p\nimport data.utils\n\
                    x if {\n\tutils := input.u\n\tutils.a == 1\n}\n\
                    f(utils) := utils.name\n\
                    y if { some utils in input.xs; utils.ok }\n\
                    z if every utils in input.xs { utils.ok }\n\
                    w if utils.is_admin\n";
        let out = resolve_imports("p.rego", text).unwrap().unwrap();
        let expected = text.replace("w if utils.is_admin", "w if data.utils.is_admin");
        assert_eq!(out, expected);
    }

    /// The package line is not a reference through an import, even when
    /// its first segment is an alias's name.
    #[test]
    fn the_package_line_is_never_rewritten() {
        let text = "package lib.sub\nimport data.lib\nf(x) := lib.g(x)\n";
        let out = resolve_imports("p.rego", text).unwrap().unwrap();
        assert_eq!(
            out,
            "package lib.sub\nimport data.lib\nf(x) := data.lib.g(x)\n"
        );
    }
}
