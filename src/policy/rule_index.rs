//! The rule index of a snapshot: which documents its rules define (for the
//! direct rule evaluation, the fast path's entry points and telling
//! "undefined" from "missing"), which may conflict, which are impure (the
//! decision cache), and the static prefixes of rule heads.

use std::collections::{HashMap, HashSet};

use regorus::unstable::{Expr, Rule, RuleHead};
use regorus::Engine;

use super::conflicts::{Kind, Output};
use super::eval::Location;
use super::path::DataPath;
use super::purity::{impure_packages, ModuleText};
use super::recursion::Dependencies;

/// The rule paths a policy set defines, for choosing the direct rule
/// evaluation and for telling "undefined" from "missing".
#[derive(Clone, Debug, Default)]
pub struct RuleIndex {
    /// Rendered paths of complete, partial set and partial object rules.
    documents: HashSet<String>,
    /// Segment paths of every rule (functions included).
    heads: HashSet<Vec<String>>,
    /// Every prefix of those paths (the root, packages, the paths themselves).
    prefixes: HashSet<Vec<String>>,
    /// Documents the fast path must not answer: those whose evaluation can
    /// reach a rule that may give two values for one document, key or call
    /// ([`Self::mark_conflict_prone`], `conflicts.rs`). OPA reports that as
    /// `eval_conflict_error`; the RVM does not detect it, so these stay with
    /// the interpreter.
    conflict_prone: HashSet<String>,
    /// Those rules, as paths (`["data", "p", "mode"]`).
    disagreeing: Vec<Vec<String>>,
    /// Packages whose documents the decision cache must not answer
    /// (`None`: the analysis failed, cache nothing).
    impure: Option<Vec<Vec<String>>>,
    /// A second `default` rule for the same document (OPA rejects these;
    /// regorus accepts them across modules): the document and where.
    pub(crate) duplicate_default: Option<(String, Location)>,
}

impl RuleIndex {
    /// `names`: [`rule_names`] (a variable index named like a rule is a
    /// reference to it, not an iteration).
    pub(crate) fn build(engine: &mut Engine, names: &RuleNames) -> RuleIndex {
        let mut index = RuleIndex::default();
        // Rules with one value per key (complete rules, functions, partial
        // objects) -> what each definition outputs.
        let mut outputs: std::collections::HashMap<Vec<String>, (Kind, Vec<Output>)> =
            Default::default();
        let mut texts: Vec<(String, Vec<String>, String)> = Vec::new();
        let mut defaults: HashSet<String> = HashSet::new();
        for module in engine.get_modules().iter() {
            let Some(package) = ref_segments(&module.package.refr) else {
                continue;
            };
            // The package exists (as `{}`) even without rules, and so do the
            // documents above it.
            for end in 0..=package.len() {
                if !index.prefixes.contains(&package[..end]) {
                    index.prefixes.insert(package[..end].to_vec());
                }
            }
            for rule in &module.policy {
                let (head, is_function) = match rule.as_ref() {
                    Rule::Spec { head, .. } => match head {
                        RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => (refr, false),
                        RuleHead::Func { refr, .. } => (refr, true),
                    },
                    Rule::Default { refr, args, .. } => (refr, !args.is_empty()),
                };
                let Some(head_segments) = ref_segments(head) else {
                    // A head that is no reference (the parser makes none):
                    // count it as covering its whole package.
                    index.heads.insert(package.clone());
                    continue;
                };
                let mut path = package.clone();
                path.extend(head_segments);
                if let Rule::Default { span, .. } = rule.as_ref() {
                    let rendered = DataPath::from_segments(path.clone()).to_string();
                    if !defaults.insert(rendered.clone()) && index.duplicate_default.is_none() {
                        index.duplicate_default = Some((rendered, Location::at(span)));
                    }
                }
                if let Some((kind, output)) = Output::of(rule, &names[&package]) {
                    let mut absolute = vec!["data".to_string()];
                    absolute.extend(path.iter().cloned());
                    outputs
                        .entry(absolute)
                        .or_insert((kind, Vec::new()))
                        .1
                        .push(output);
                }
                if !is_function {
                    index
                        .documents
                        .insert(DataPath::from_segments(path.clone()).to_string());
                }
                for end in 0..=path.len() {
                    if !index.prefixes.contains(&path[..end]) {
                        index.prefixes.insert(path[..end].to_vec());
                    }
                }
                index.heads.insert(path);
            }
            let text = module.package.span.source.get_contents().clone();
            texts.push((
                module.package.span.source.get_path().clone(),
                package.clone(),
                text,
            ));
        }
        let module_texts: Vec<ModuleText> = texts
            .iter()
            .map(|(id, package, text)| ModuleText {
                id,
                package: package.clone(),
                text,
            })
            .collect();
        index.impure = impure_packages(&module_texts).ok();
        // Rules at a path and below it (`obj[k] := 1` and `obj.a := 2`) can
        // give two values for one key too.
        let nested: HashSet<&Vec<String>> = outputs
            .keys()
            .filter(|path| (1..path.len()).any(|end| outputs.contains_key(&path[..end])))
            .collect();
        let mut disagreeing: Vec<Vec<String>> = outputs
            .iter()
            .filter(|(path, (kind, defs))| {
                Output::may_disagree(*kind, defs) || nested.contains(path)
            })
            .map(|(path, _)| path.clone())
            .collect();
        for path in &nested {
            disagreeing.extend(
                (1..path.len())
                    .map(|end| path[..end].to_vec())
                    .filter(|p| outputs.contains_key(p)),
            );
        }
        index.disagreeing = disagreeing;
        index
    }

    /// Marks as conflict-prone every document whose evaluation can reach a
    /// rule that may conflict.
    pub(crate) fn mark_conflict_prone(&mut self, dependencies: &Dependencies) {
        // A document holding such a rule (`p.obj` holding `p.obj.fixed`)
        // is computed with it.
        let mut targets = self.disagreeing.clone();
        for path in &self.disagreeing {
            targets.extend((2..path.len()).map(|end| path[..end].to_vec()));
        }
        self.conflict_prone = dependencies
            .reaching(&targets)
            .into_iter()
            .map(|path| DataPath::from_segments(path[1..].to_vec()).to_string())
            .collect();
    }

    /// Documents the fast path may answer.
    pub fn fast_candidates(&self) -> Vec<String> {
        let mut entries: Vec<String> = self
            .documents
            .difference(&self.conflict_prone)
            .cloned()
            .collect();
        entries.sort();
        entries
    }

    /// Whether the document at `path` is a function of input, data and policy
    /// alone, so that its answers may be cached (see `purity.rs`).
    pub fn cacheable(&self, path: &DataPath) -> bool {
        let Some(impure) = &self.impure else {
            return false;
        };
        let segments = path.segments();
        !impure
            .iter()
            .any(|p| p.starts_with(segments) || segments.starts_with(p))
    }

    /// Whether `path` names a rule's document exactly.
    pub fn is_rule(&self, path: &DataPath) -> bool {
        self.documents.contains(path.as_ref_str())
    }

    /// Whether some rule defines `path`, a document above it, or one below it.
    pub fn covers(&self, path: &DataPath) -> bool {
        let segments = path.segments();
        self.prefixes.contains(segments)
            || (1..=segments.len()).any(|end| self.heads.contains(&segments[..end]))
    }
}

/// Per package (`["p"]`), the first segment of each of its rules' heads.
pub(crate) type RuleNames = HashMap<Vec<String>, HashSet<String>>;

/// The [`RuleNames`] of the modules an engine holds: what a plain name in
/// a package can refer to.
pub(crate) fn rule_names(engine: &mut Engine) -> RuleNames {
    let mut names = RuleNames::new();
    for module in engine.get_modules().iter() {
        let Some(package) = ref_segments(&module.package.refr) else {
            continue;
        };
        let names = names.entry(package).or_default();
        for rule in &module.policy {
            if let Some(name) =
                ref_segments(super::fold::ast::head_ref(rule)).and_then(|s| s.into_iter().next())
            {
                names.insert(name);
            }
        }
    }
    names
}

/// The static prefix of a reference: `a.b["c"][x].d` -> `[a, b, c]`. What
/// follows a non-string index is not part of a fixed path (`p[x].y := 1`
/// defines documents below `p`, not `p.y`), so it is left out.
pub(crate) fn ref_segments(expr: &Expr) -> Option<Vec<String>> {
    let mut segments = Vec::new();
    static_prefix(expr, &mut segments)?;
    Some(segments)
}

/// Pushes the static segments of `expr`; `Some(true)` when they end at a
/// dynamic index (and nothing further may be pushed).
fn static_prefix(expr: &Expr, out: &mut Vec<String>) -> Option<bool> {
    match expr {
        Expr::Var { span, .. } => {
            out.push(span.text().to_string());
            Some(false)
        }
        Expr::RefDot { refr, field, .. } => {
            let stopped = static_prefix(refr, out)?;
            if !stopped {
                out.push(field.0.text().to_string());
            }
            Some(stopped)
        }
        Expr::RefBrack { refr, index, .. } => {
            if static_prefix(refr, out)? {
                return Some(true);
            }
            match index.as_ref() {
                Expr::String { value, .. } | Expr::RawString { value, .. } => {
                    out.push(value.as_string().ok()?.to_string());
                    Some(false)
                }
                _ => Some(true),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use regorus::Value;

    use super::super::eval::Evaluator;
    use super::*;

    fn rules(rego: &str) -> RuleIndex {
        Evaluator::build([("p.rego", rego)], Value::new_object())
            .unwrap()
            .rules()
            .clone()
    }

    #[test]
    fn knows_rules_packages_and_functions() {
        let rules = rules("package p.q\nx := 1\nf(a) := a\ns contains 1\n");
        assert!(rules.is_rule(&DataPath::parse("p/q/x")));
        assert!(rules.is_rule(&DataPath::parse("p/q/s")));
        assert!(!rules.is_rule(&DataPath::parse("p/q/f")));
        assert!(rules.covers(&DataPath::parse("p")));
        assert!(rules.covers(&DataPath::parse("p/q/x/y")));
        assert!(!rules.covers(&DataPath::parse("p/r")));
    }

    /// A head with a variable key defines documents below its static prefix,
    /// whatever follows the variable.
    #[test]
    fn dynamic_heads_cover_everything_below_their_prefix() {
        let rules = rules("package p\nobj[k].leaf := 1 if some k in [\"a\"]\n");
        assert!(rules.is_rule(&DataPath::parse("p/obj")));
        assert!(!rules.is_rule(&DataPath::parse("p/obj/leaf")));
        assert!(rules.covers(&DataPath::parse("p/obj/a/leaf")));
        assert!(rules.covers(&DataPath::parse("p/obj/zzz")));
        assert!(!rules.covers(&DataPath::parse("p/other")));
    }
}
