//! Rule indexing, the copies: each indexed rule's copies (planned by
//! `guard.rs`) added to the modules the fast path compiles, and per
//! decision, the copy for the value of the input's field.
//!
//! A copy is the rule's text, definition by definition, less those its
//! value fails, under another name (`allow` becomes `__regent_ix3_allow`),
//! in a new module of the same package with the same imports. The copies of
//! a package's indexed rules compile, with those rules, into one program
//! beside the package's (see `compile.rs`): as entry points of one program,
//! they share the code of what they call.

use std::collections::{BTreeMap, HashMap};

use regorus::unstable::{Module, Ref};
use regorus::{Engine, Value};

use super::guard::{Guards, Indexed};
use super::Entry;

/// At most this many bytes of copied text per rule: copies grow with the
/// values times the definitions kept, and compiling them is paid at every
/// reload. A rule over it is not indexed.
const MAX_COPIED_BYTES: usize = 256 * 1024;

/// Adds the copies of `guards`'s rules to `engine` and returns their
/// documents. A rule whose copies cannot be added is logged and keeps none
/// (the engine is as before it).
pub(super) fn add(engine: &mut Engine, modules: &[Ref<Module>], guards: &Guards) -> Vec<String> {
    let mut documents = Vec::new();
    for (at, rule) in guards.rules.iter().enumerate() {
        let before = engine.clone();
        match add_rule(engine, modules, rule, at) {
            Ok(()) => documents.extend((0..rule.copies.len()).map(|n| rule.copy_document(n))),
            Err(reason) => {
                tracing::info!(rule = %rule.document(), %reason, "rule not indexed");
                *engine = before;
            }
        }
    }
    documents
}

/// Adds the copies of `rule` (the `at`th), one module per module its
/// definitions come from.
fn add_rule(
    engine: &mut Engine,
    modules: &[Ref<Module>],
    rule: &Indexed,
    at: usize,
) -> Result<(), String> {
    // Module -> (text of its copies, how many rules).
    let mut copies: BTreeMap<usize, (String, usize)> = BTreeMap::new();
    let mut bytes = 0;
    for (n, kept) in rule.copies.iter().enumerate() {
        let name = rule.copy_name(n);
        for definition in kept.iter().map(|&i| rule.definitions[i]) {
            let text = modules[definition.module]
                .package
                .span
                .source
                .get_contents();
            let head = definition.name_at..definition.name_at + rule.name.len();
            let (Some(before), Some(after)) = (
                text.get(definition.start..head.start),
                text.get(head.end..definition.end),
            ) else {
                return Err("a definition's range does not hold its head".into());
            };
            if text.get(head) != Some(rule.name.as_str()) {
                return Err(format!("no name {} where its head starts", rule.name));
            }
            bytes += definition.end - definition.start;
            if bytes > MAX_COPIED_BYTES {
                return Err(format!("copies over {MAX_COPIED_BYTES} bytes"));
            }
            let (out, count) = copies.entry(definition.module).or_default();
            out.push_str(before);
            out.push_str(&name);
            out.push_str(after);
            out.push('\n');
            *count += 1;
        }
    }
    for (index, (text, count)) in copies {
        let module = &modules[index];
        let source = &module.package.span.source;
        // The package line and imports: everything before the first rule.
        let first = module.policy.first().map_or(0, |r| r.span().start as usize);
        let preamble = source.get_contents().get(..first).unwrap_or_default();
        let id = format!("{}#regent-index-{at}", source.get_path());
        engine
            .add_policy(id, format!("{preamble}\n{text}"))
            .map_err(|e| e.to_string())?;
        let parsed = engine.get_modules().last().map_or(0, |m| m.policy.len());
        if parsed != count {
            return Err(format!(
                "{count} copied definitions parsed as {parsed} rules"
            ));
        }
    }
    Ok(())
}

/// An indexed rule at run time: the entry point of the copy for each value
/// of the field.
pub(super) struct Dispatch {
    /// The input field as object keys.
    path: Vec<Value>,
    /// Field value -> its copy's entry point (`None`: the rule's own);
    /// foldhash, seeded per table, as the value comes from the request.
    values: HashMap<String, Option<Entry>, foldhash::fast::RandomState>,
    other: Option<Entry>,
}

impl Dispatch {
    /// The dispatch of `rule`, from the compiled entry points `copies`
    /// (a copy that did not compile leaves its values to the rule itself);
    /// `None` when no copy compiled.
    pub(super) fn new(
        path: &[String],
        rule: &Indexed,
        copies: &HashMap<String, Entry>,
    ) -> Option<Dispatch> {
        let entry = |copy: Option<usize>| copy.and_then(|n| copies.get(&rule.copy_document(n)));
        let dispatch = Dispatch {
            path: path.iter().map(|s| Value::from(s.as_str())).collect(),
            values: rule
                .values
                .iter()
                .map(|(value, copy)| (value.clone(), entry(*copy).copied()))
                .collect(),
            other: entry(rule.other).copied(),
        };
        (dispatch.other.is_some() || dispatch.values.values().any(Option::is_some))
            .then_some(dispatch)
    }

    /// The copy for `input` (`None`: the rule itself).
    pub(super) fn pick(&self, input: &Value) -> Option<Entry> {
        // (A missing key or a value that is not an object: undefined.)
        match self.path.iter().fold(input, |at, key| &at[key]) {
            Value::String(s) => match self.values.get(s.as_ref()) {
                Some(copy) => *copy,
                None => self.other,
            },
            _ => self.other,
        }
    }
}
