//! Finding tests in parsed modules and planning how to run each one.
//!
//! Most real tests have one shape: `test_x if { data.p.r with input as {...} }`
//! (or `not data.p.r with input as {...}`). regorus evaluates `with` slowly in
//! large modules, so such a test is planned as a direct evaluation of
//! `data.p.r` with that input against the policies alone: the same answer
//! without `with`. Every other test runs as written, through the interpreter.

use regorus::unstable::{Expr, Literal, Module, Rule, RuleHead};
use regorus::Value;

use crate::policy::eval::ref_segments;
use crate::policy::DataPath;

/// How to run one test.
#[derive(Clone, Debug)]
pub enum Plan {
    /// Evaluate `path` with `input`; the test passes when the value is defined
    /// and not `false` (or, when `negated`, when it is undefined or `false`).
    Direct {
        path: DataPath,
        input: Value,
        negated: bool,
    },
    /// Evaluate the test rule itself with every module loaded.
    General,
}

/// One test rule.
#[derive(Clone, Debug)]
pub struct TestCase {
    /// `data.pkg`.
    pub package: String,
    pub name: String,
    pub file: String,
    pub row: u32,
    pub col: u32,
    /// `todo_test_*`: reported as skipped, never run.
    pub todo: bool,
    pub plan: Plan,
}

impl TestCase {
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.package, self.name)
    }
}

/// The `data.`-rooted package path of a module, as segments.
pub fn package_segments(module: &Module) -> Option<Vec<String>> {
    ref_segments(&module.package.refr)
}

/// Whether a module holds any test rule.
pub fn is_test_module(module: &Module) -> bool {
    module.policy.iter().any(|rule| test_name(rule).is_some())
}

fn test_name(rule: &Rule) -> Option<String> {
    let refr = match rule {
        Rule::Spec {
            head: RuleHead::Compr { refr, .. },
            ..
        } => refr,
        _ => return None,
    };
    let Expr::Var { span, .. } = refr.as_ref() else {
        return None;
    };
    let name = span.text();
    (name.starts_with("test_") || name.starts_with("todo_test_")).then(|| name.to_string())
}

/// Every test rule of `module`, in source order. `test_packages` are the
/// packages of all test modules: a direct plan must not reach into them,
/// because direct plans run against the policies alone.
pub fn tests_of(module: &Module, test_packages: &[Vec<String>]) -> Vec<TestCase> {
    let Some(package) = package_segments(module) else {
        return Vec::new();
    };
    let package_name = DataPath::from_segments(package).to_string();
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut tests: Vec<TestCase> = Vec::new();
    for rule in &module.policy {
        let Some(name) = test_name(rule) else {
            continue;
        };
        let span = rule.span();
        let plan = direct_plan(rule, test_packages).unwrap_or(Plan::General);
        if let Some(&i) = seen.get(&name) {
            // Several definitions of one test: run the rule as written.
            tests[i].plan = Plan::General;
            continue;
        }
        seen.insert(name.clone(), tests.len());
        tests.push(TestCase {
            package: package_name.clone(),
            todo: name.starts_with("todo_"),
            name,
            file: span.source.get_path().clone(),
            row: span.line,
            col: span.col,
            plan,
        });
    }
    tests
}

/// Recognises `[not] data.x.y with input as <JSON literal>` as the whole body.
fn direct_plan(rule: &Rule, test_packages: &[Vec<String>]) -> Option<Plan> {
    let Rule::Spec {
        head: RuleHead::Compr { assign: None, .. },
        bodies,
        ..
    } = rule
    else {
        return None;
    };
    let [body] = bodies.as_slice() else {
        return None;
    };
    if body.assign.is_some() || body.is_else {
        return None;
    }
    let [stmt] = body.query.stmts.as_slice() else {
        return None;
    };
    let [with] = stmt.with_mods.as_slice() else {
        return None;
    };
    if with.refr.span().text() != "input" {
        return None;
    }
    let (expr, negated) = match &stmt.literal {
        Literal::Expr { expr, .. } => (expr, false),
        Literal::NotExpr { expr, .. } => (expr, true),
        _ => return None,
    };
    let segments = ref_segments(expr)?;
    let (root, rest) = segments.split_first()?;
    // Only plain references (no variables or computed keys) qualify.
    if root != "data" || expr.span().text().contains(['[', '(']) {
        return None;
    }
    if test_packages
        .iter()
        .any(|p| rest.starts_with(p) || p.starts_with(rest))
    {
        return None;
    }
    // The value's own span is unreliable for large objects in regorus 0.14;
    // the modifier's span (`with input as <value>`) is not.
    let value_text = with
        .span
        .text()
        .strip_prefix("with")?
        .trim_start()
        .strip_prefix("input")?
        .trim_start()
        .strip_prefix("as")?;
    let input = Value::from_json_str(value_text.trim()).ok()?;
    Some(Plan::Direct {
        path: DataPath::from_segments(rest.to_vec()),
        input,
        negated,
    })
}
