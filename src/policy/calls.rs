//! Calls to functions that nothing defines. OPA's type checker refuses a
//! module that makes one (`rego_type_error`, `undefined function
//! data.lib.f`); regorus finds out only when the call is evaluated, so every
//! decision reaching it would fail. Checked once per snapshot, on the
//! import-resolved modules, so that such a policy is refused at load (a
//! write, a reload, a bundle) and never replaces the last good one.
//!
//! A call is undefined when its name, import aliases resolved,
//! - is under `data` and no function (or default function) has that path, or
//! - is a plain name (`f(x)`) that is neither a function of the calling
//!   package nor a built-in of regorus or of OPA.
//!
//! Dotted names outside `data` (`time.now_ns`, `crypto.sha256`) are left
//! alone: a built-in OPA has and regorus lacks must not keep out a policy
//! that OPA loads (its calls fail when evaluated, as before).

use std::collections::{HashMap, HashSet};

use regorus::unstable::{Expr, Rule, RuleHead};
use regorus::Engine;

use super::eval::{ref_segments, Location};
use super::fold::ast::{
    children, comprehension_query, import_aliases, static_path, whole_rule, Pass,
};

/// OPA's built-ins whose names have one segment (OPA 1.x capabilities,
/// deprecated ones included: OPA accepts them in v0 modules).
const OPA_PLAIN_BUILTINS: &[&str] = &[
    "abs",
    "all",
    "and",
    "any",
    "assign",
    "cast_array",
    "cast_boolean",
    "cast_null",
    "cast_object",
    "cast_set",
    "cast_string",
    "ceil",
    "concat",
    "contains",
    "count",
    "div",
    "endswith",
    "eq",
    "equal",
    "floor",
    "format_int",
    "gt",
    "gte",
    "indexof",
    "indexof_n",
    "intersection",
    "is_array",
    "is_boolean",
    "is_null",
    "is_number",
    "is_object",
    "is_set",
    "is_string",
    "lower",
    "lt",
    "lte",
    "max",
    "min",
    "minus",
    "mul",
    "neq",
    "or",
    "plus",
    "print",
    "product",
    "re_match",
    "rem",
    "replace",
    "round",
    "set_diff",
    "sort",
    "split",
    "sprintf",
    "startswith",
    "substring",
    "sum",
    "to_number",
    "trace",
    "trim",
    "trim_left",
    "trim_prefix",
    "trim_right",
    "trim_space",
    "trim_suffix",
    "type_name",
    "union",
    "upper",
    "walk",
];

/// The paths of every function the modules define (`data.lib.f`), as
/// segments.
#[derive(Debug, Default)]
pub struct Functions(HashSet<Vec<String>>);

impl Functions {
    pub fn of(engine: &mut Engine) -> Functions {
        let mut functions: HashSet<Vec<String>> = HashSet::new();
        for module in engine.get_modules().iter() {
            let Some(package) = ref_segments(&module.package.refr) else {
                continue;
            };
            for rule in &module.policy {
                let refr = match rule.as_ref() {
                    Rule::Spec {
                        head: RuleHead::Func { refr, .. },
                        ..
                    } => refr,
                    Rule::Default { refr, args, .. } if !args.is_empty() => refr,
                    _ => continue,
                };
                if let (path, true) = static_path(refr) {
                    functions.insert(absolute(&package, &path));
                }
            }
        }
        Functions(functions)
    }
}

/// The first call in an ad-hoc query (`/v1/query`) to a function nothing
/// defines. A query has no package and no imports: a plain name must be a
/// built-in, a dotted one under `data` a defined function.
pub fn undefined_call_in_query(
    functions: &Functions,
    query: &regorus::unstable::Query,
) -> Option<(String, Location)> {
    let mut calls = Calls {
        package: &[],
        aliases: &HashMap::new(),
        functions: &functions.0,
        found: None,
    };
    calls.query(query);
    calls.found
}

/// The first call to an undefined function, in module order: its name as
/// OPA reports it, and where it is.
pub fn first_undefined_call(
    engine: &mut Engine,
    functions: &Functions,
) -> Option<(String, Location)> {
    let functions = &functions.0;
    let modules = engine.get_modules();
    for module in modules.iter() {
        let Some(package) = ref_segments(&module.package.refr) else {
            continue;
        };
        let aliases = import_aliases(module);
        let mut calls = Calls {
            package: &package,
            aliases: &aliases,
            functions,
            found: None,
        };
        for rule in &module.policy {
            whole_rule(&mut calls, rule);
            if calls.found.is_some() {
                return calls.found;
            }
        }
    }
    None
}

/// `data.<package>.<path>`, as segments.
fn absolute(package: &[String], path: &[String]) -> Vec<String> {
    std::iter::once("data".to_string())
        .chain(package.iter().cloned())
        .chain(path.iter().cloned())
        .collect()
}

/// Where a reference starts: the spans of a call and of a `.field` start
/// at their `(` and `.`.
pub(in crate::policy) fn start(expr: &Expr) -> &regorus::unstable::Span {
    match expr {
        Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } => start(refr),
        other => other.span(),
    }
}

/// A scan of one module's calls.
struct Calls<'a> {
    package: &'a [String],
    /// Import alias (or last segment) -> the imported path.
    aliases: &'a HashMap<String, Vec<String>>,
    functions: &'a HashSet<Vec<String>>,
    found: Option<(String, Location)>,
}

impl Calls<'_> {
    /// Whether a call to `name` (as written) reaches something callable.
    fn defined(&self, name: &[String]) -> bool {
        let resolved = match self.aliases.get(&name[0]) {
            Some(imported) => imported.iter().chain(&name[1..]).cloned().collect(),
            None => name.to_vec(),
        };
        if resolved[0] == "data" {
            return self.functions.contains(&resolved);
        }
        if self.functions.contains(&absolute(self.package, &resolved)) {
            return true;
        }
        let dotted = resolved.join(".");
        resolved.len() > 1
            || regorus::unstable::BUILTINS.contains_key(dotted.as_str())
            || OPA_PLAIN_BUILTINS.contains(&dotted.as_str())
    }
}

impl Pass for Calls<'_> {
    const DECLARATIONS: bool = true;

    fn with_value(&mut self, value: &Expr) {
        self.expr(value);
    }

    fn expr(&mut self, expr: &Expr) {
        if self.found.is_some() {
            return;
        }
        if let Expr::Call { fcn, params, .. } = expr {
            if let (name, true) = static_path(fcn) {
                if !name.is_empty() && !self.defined(&name) {
                    self.found = Some((name.join("."), Location::at(start(fcn))));
                    return;
                }
            }
            for param in params {
                self.expr(param);
            }
            return;
        }
        if let Some(query) = comprehension_query(expr) {
            self.query(query);
        }
        for child in children(expr) {
            self.expr(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{refusal, Evaluator};

    #[test]
    fn calls_to_undefined_functions_are_refused_with_their_location() {
        let err = refusal(&[(
            "p.rego",
            "package p\nimport rego.v1\n\nx if data.nolib.f(1)\n",
        )]);
        assert_eq!(
            err.as_deref(),
            Some("p.rego:4:6: undefined function data.nolib.f")
        );
        let err = refusal(&[(
            "p.rego",
            "package p\nimport rego.v1\nis_admin(u) if u.role == \"admin\"\n\
             x if { some u in input.users; is_admn(u) }\n",
        )]);
        assert_eq!(
            err.as_deref(),
            Some("p.rego:4:31: undefined function is_admn")
        );
        // Through an import, inside a comprehension.
        let err = refusal(&[
            ("lib.rego", "package lib\nimport rego.v1\nf(x) := x + 1\n"),
            (
                "p.rego",
                "package p\nimport rego.v1\nimport data.lib\nx := [y | some v in [1]; y := lib.g(v)]\n",
            ),
        ]);
        assert_eq!(
            err.as_deref(),
            Some("p.rego:4:31: undefined function data.lib.g")
        );
        // In a set rule's key, and in a head reference's computed key.
        let err = refusal(&[(
            "p.rego",
            "package p\nimport rego.v1\ndeny contains msg(x) if some x in input.xs\n",
        )]);
        assert_eq!(err.as_deref(), Some("p.rego:3:15: undefined function msg"));
        let err = refusal(&[(
            "p.rego",
            "package p\nimport rego.v1\nobj[lowr(k)] := 1 if some k in input.ks\n",
        )]);
        assert_eq!(err.as_deref(), Some("p.rego:3:5: undefined function lowr"));
        // In the value of a `with` modifier.
        let err = refusal(&[(
            "p.rego",
            "package p\nimport rego.v1\nx if input.a with input as {\"a\": mk(1)}\n",
        )]);
        assert_eq!(err.as_deref(), Some("p.rego:3:34: undefined function mk"));
        // A rule that is not a function is not callable.
        let err = refusal(&[(
            "p.rego",
            "package p\nimport rego.v1\nallow := true\nx if allow(1)\n",
        )]);
        assert_eq!(err.as_deref(), Some("p.rego:4:6: undefined function allow"));
    }

    #[test]
    fn defined_functions_and_builtins_are_accepted() {
        let lib = "package lib\nimport rego.v1\nf(x) := x + 1\ndefault g(_) := false\n\
                   g(x) if x > 1\nns.h(x) := x\n";
        let p = "package p\nimport rego.v1\nimport data.lib\nimport data.lib as l\n\
                 local(x) := x * 2\n\
                 a := lib.f(1)\nb := l.g(2)\nc := data.lib.ns.h(3)\nd := local(4)\n\
                 e := count([y | some y in [1]; startswith(\"ab\", \"a\")])\n\
                 f if every v in [1] { lib.f(v) > 0 }\n\
                 g := time.now_ns()\nh := http.send({})\ni := trim_space(\" x \")\n\
                 j if print(1)\n";
        assert_eq!(refusal(&[("lib.rego", lib), ("p.rego", p)]), None);
        // A package named after an import, a sibling module's function
        // called relatively, a function argument named like an alias.
        let sub = "package lib.sub\nimport rego.v1\nimport data.lib\nh(x) := lib.f(x)\n";
        let sibling = "package lib.sub\nimport rego.v1\nk(x) := h(x)\n";
        let user = "package q\nimport rego.v1\nimport data.lib\n\
                    a := data.lib.sub.k(1)\nname(lib) := lib.name\n";
        let modules = [
            ("lib.rego", lib),
            ("sub.rego", sub),
            ("sibling.rego", sibling),
            ("q.rego", user),
        ];
        assert_eq!(refusal(&modules), None);
        let e = Evaluator::build(modules, regorus::Value::new_object()).unwrap();
        let a = e.evaluate(
            &crate::policy::DataPath::parse("q/a"),
            None,
            crate::policy::EvalOptions::default(),
        );
        assert_eq!(
            a,
            Ok(crate::policy::Outcome::Defined(regorus::Value::from(2u64)))
        );
    }
}
