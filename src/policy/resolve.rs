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
use regorus::unstable::{Lexer, Parser, TokenKind};
use regorus::Source;

/// Returns `text` with every reference through a `data` import made
/// absolute, or `None` when there is nothing to rewrite (or the module does
/// not parse: the caller reports the error from the original text).
pub fn resolve_imports(id: &str, text: &str) -> Result<Option<String>> {
    let Ok(source) = Source::from_contents(id.to_string(), text.to_string()) else {
        return Ok(None);
    };
    let Ok(module) = Parser::new(&source).and_then(|mut p| {
        p.enable_rego_v1()?;
        p.parse()
    }) else {
        return Ok(None);
    };
    // alias -> target text, and the byte ranges of the import statements.
    let mut aliases: Vec<(String, String)> = Vec::new();
    let mut import_ranges: Vec<(u32, u32)> = Vec::new();
    for import in &module.imports {
        import_ranges.push((import.span.start, import.span.end));
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

    let mut lexer = Lexer::new(&source);
    let mut edits: Vec<(usize, usize, &str)> = Vec::new();
    let mut previous: Option<String> = None;
    let mut pending: Option<(usize, usize, &str)> = None;
    loop {
        let token = lexer.next_token()?;
        if matches!(token.0, TokenKind::Eof) {
            break;
        }
        let span = &token.1;
        let text_of = span.text().to_string();
        // A candidate is committed unless the next token makes it a local
        // definition (`utils := ...`), which would shadow the import.
        if let Some(edit) = pending.take() {
            if text_of != ":=" {
                edits.push(edit);
            }
        }
        let in_import = import_ranges
            .iter()
            .any(|&(s, e)| span.start >= s && span.end <= e);
        if matches!(token.0, TokenKind::Ident) && !in_import {
            let after_dot = previous.as_deref() == Some(".");
            let after_some = previous.as_deref() == Some("some");
            if !after_dot && !after_some {
                if let Some((_, target)) = aliases.iter().find(|(a, _)| *a == text_of) {
                    pending = Some((span.start as usize, span.end as usize, target.as_str()));
                }
            }
        }
        previous = Some(text_of);
    }
    if let Some(edit) = pending {
        edits.push(edit);
    }
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

    #[test]
    fn local_definitions_are_not_rewritten() {
        let text = "package p\nimport data.utils\nx if {\n\tutils := 1\n\tutils == 1\n}\n";
        let out = resolve_imports("p.rego", text).unwrap().unwrap();
        assert!(out.contains("\tutils := 1\n"), "{out}");
    }
}
