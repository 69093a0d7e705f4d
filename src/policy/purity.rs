//! Which documents the decision cache may answer: those whose value depends
//! only on input, data and policy. A package is *impure* when one of its
//! modules names a built-in whose result depends on something else (the
//! clock, randomness, the network, the runtime) or that has a side effect
//! (`print`, `trace`), or when it references an impure package, or when it
//! references `data` dynamically (`data[x]`, bare `data`), since that could
//! reach anything.
//!
//! The analysis is per package and conservative: a mention of such a
//! built-in anywhere in a module (even under `with`, which would mock it)
//! makes its package impure. It runs on the import-resolved text, so every
//! cross-package reference is spelled `data.a.b...`, and it is driven by
//! regorus's lexer, so strings and comments do not count.

use std::collections::HashSet;

use anyhow::Result;
use regorus::unstable::TokenKind;
use regorus::Source;

/// Built-ins whose results are not a function of input, data and policy
/// (OPA marks most of them `Nondeterministic`), or that have side effects.
pub const IMPURE_BUILTINS: &[&str] = &[
    "time.now_ns",
    "rand.intn",
    "uuid.rfc4122",
    "http.send",
    "opa.runtime",
    "net.lookup_ip_addr",
    "io.jwt.decode_verify",
    "crypto.x509.parse_and_verify_certificates",
    "crypto.x509.parse_and_verify_certificates_with_options",
    "providers.aws.sign_req",
    "print",
    "trace",
];

/// What one module refers to.
#[derive(Debug, Default)]
struct Mentions {
    /// Names an impure built-in.
    impure: bool,
    /// Refers to `data` in a way that cannot be resolved statically.
    dynamic_data: bool,
    /// Static `data.a.b...` references, as segment lists (import
    /// statements included).
    data_refs: Vec<Vec<String>>,
    /// How many of `data_refs`, from the first, are import statements.
    imports: usize,
    /// Targets (segments below `data`) of the import aliases that stand
    /// alone in a rule (`x := utils`, or a reference left as written): a
    /// use of the whole document.
    alias_uses: Vec<Vec<String>>,
}

fn scan(id: &str, text: &str) -> Result<Mentions> {
    let source = Source::from_contents(id.to_string(), text.to_string())?;
    let tokens = super::resolve::tokens(&source)?;
    let word = |i: usize| tokens[i].1.text();
    let mut mentions = Mentions::default();
    // alias -> target, from `import data.a.b [as c]` (imports come first).
    let mut aliases: Vec<(String, Vec<String>)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let after_dot = i > 0 && word(i - 1) == ".";
        if !matches!(tokens[i].0, TokenKind::Ident) || after_dot {
            i += 1;
            continue;
        }
        let in_import = i > 0 && word(i - 1) == "import";
        if !in_import && word(i) != "import" {
            if let Some((_, target)) = aliases.iter().find(|(a, _)| a == word(i)) {
                mentions.alias_uses.push(target.clone());
            }
        }
        // A dotted chain of identifiers: `a.b.c`.
        let mut chain = vec![word(i).to_string()];
        let mut j = i + 1;
        while j + 1 < tokens.len() && word(j) == "." && matches!(tokens[j + 1].0, TokenKind::Ident)
        {
            chain.push(word(j + 1).to_string());
            j += 2;
        }
        let dotted = chain.join(".");
        if IMPURE_BUILTINS.contains(&dotted.as_str()) {
            mentions.impure = true;
        }
        if chain[0] == "data" && in_import {
            let (alias, end) = match (tokens.get(j), tokens.get(j + 1)) {
                (Some(t), Some(a)) if t.1.text() == "as" => (a.1.text().to_string(), j + 2),
                _ => (chain[chain.len() - 1].clone(), j),
            };
            aliases.push((alias, chain[1..].to_vec()));
            mentions.data_refs.push(chain[1..].to_vec());
            mentions.imports = mentions.data_refs.len();
            i = end;
            continue;
        }
        if chain[0] == "data" {
            let next = tokens.get(j).map(|t| t.1.text());
            if chain.len() == 1 || next == Some("[") {
                // `data`, `data[x]`, `data.a[x]`: the static prefix is known
                // only up to the bracket; `data.a[x]` stays within `data.a`.
                if chain.len() == 1 {
                    mentions.dynamic_data = true;
                } else {
                    mentions.data_refs.push(chain[1..].to_vec());
                }
            } else {
                mentions.data_refs.push(chain[1..].to_vec());
            }
        }
        i = j;
    }
    Ok(mentions)
}

/// One module: its id, its package (segments below `data`) and its text.
pub struct ModuleText<'a> {
    pub id: &'a str,
    pub package: Vec<String>,
    pub text: &'a str,
}

/// The static `data` references of a module's rules (import-resolved), as
/// segments below `data` up to the first index that is not a name: `data.a.b`
/// is `a.b`, and `data.a[k]` or `x := data.a` reads the whole of `a`; `None`
/// when a rule reads `data` itself (`data`, `data[x]`). Import statements do
/// not count; an alias standing alone counts as its target. For the rule
/// index, which adds rules to packages that no reference may see whole.
pub fn whole_references(id: &str, text: &str) -> Result<Option<Vec<Vec<String>>>> {
    let mut mentions = scan(id, text)?;
    if mentions.dynamic_data || mentions.alias_uses.iter().any(Vec::is_empty) {
        return Ok(None);
    }
    let mut refs = mentions.data_refs.split_off(mentions.imports);
    refs.extend(mentions.alias_uses);
    Ok(Some(refs))
}

/// The packages whose documents must not be cached.
pub fn impure_packages(modules: &[ModuleText<'_>]) -> Result<Vec<Vec<String>>> {
    let mut packages: Vec<Vec<String>> = Vec::new();
    let mut direct: HashSet<usize> = HashSet::new();
    let mut refs: Vec<Vec<Vec<String>>> = Vec::new();
    let mut dynamic: HashSet<usize> = HashSet::new();
    for module in modules {
        let index = match packages.iter().position(|p| *p == module.package) {
            Some(index) => index,
            None => {
                packages.push(module.package.clone());
                refs.push(Vec::new());
                packages.len() - 1
            }
        };
        let mentions = scan(module.id, module.text)?;
        if mentions.impure {
            direct.insert(index);
        }
        if mentions.dynamic_data {
            dynamic.insert(index);
        }
        refs[index].extend(mentions.data_refs);
    }
    let overlaps = |a: &[String], b: &[String]| a.starts_with(b) || b.starts_with(a);
    let mut impure = direct;
    loop {
        let before = impure.len();
        let any_impure = !impure.is_empty();
        for (index, package_refs) in refs.iter().enumerate() {
            if impure.contains(&index) {
                continue;
            }
            let reaches_impure = (dynamic.contains(&index) && any_impure)
                || package_refs
                    .iter()
                    .any(|r| impure.iter().any(|&other| overlaps(r, &packages[other])));
            if reaches_impure {
                impure.insert(index);
            }
        }
        if impure.len() == before {
            break;
        }
    }
    let mut out: Vec<Vec<String>> = impure.into_iter().map(|i| packages[i].clone()).collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn impure(modules: &[(&str, &str)]) -> Vec<String> {
        let modules: Vec<ModuleText> = modules
            .iter()
            .map(|(package, text)| ModuleText {
                id: "m.rego",
                package: package.split('.').map(str::to_string).collect(),
                text,
            })
            .collect();
        impure_packages(&modules)
            .unwrap()
            .into_iter()
            .map(|p| p.join("."))
            .collect()
    }

    #[test]
    fn clock_randomness_and_network_are_impure_and_spread_to_callers() {
        let found = impure(&[
            ("clock", "package clock\nnow := time.now_ns()\n"),
            ("uses", "package uses\nx if data.clock.now > 0\n"),
            ("above", "package above\nx := data.uses\n"),
            (
                "pure",
                "package pure\nx := input.a\n# time.now_ns()\ns := \"rand.intn\"\n",
            ),
            ("other", "package other\ny := data.pure.x\n"),
        ]);
        assert_eq!(found, ["above", "clock", "uses"]);
    }

    #[test]
    fn dynamic_data_references_are_impure_only_when_something_is() {
        let pure = impure(&[
            ("a", "package a\nx := data[input.p]\n"),
            ("b", "package b\ny := 1\n"),
        ]);
        assert!(pure.is_empty(), "{pure:?}");
        let found = impure(&[
            ("a", "package a\nx := data[input.p]\n"),
            ("b", "package b\ny := rand.intn(\"k\", 10)\n"),
        ]);
        assert_eq!(found, ["a", "b"]);
    }

    #[test]
    fn fields_named_like_builtins_are_not_calls() {
        let found = impure(&[("a", "package a\nx := input.time.now_ns\n")]);
        assert!(found.is_empty(), "{found:?}");
    }
}
