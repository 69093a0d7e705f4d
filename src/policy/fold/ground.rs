//! Which rules are ground: the rule table of a policy set, the scan of a
//! rule's values for anything that can depend on the input, and the names a
//! package may use as local variables (never rewritten as references).

use std::collections::{HashMap, HashSet};

use regorus::unstable::{AssignOp, Expr, Literal, Module, Query, Rule, RuleHead};

use super::ast::{children, descend, dynamic_indexes, head_ref, static_path, values, Pass};
use crate::policy::purity::IMPURE_BUILTINS;

/// Every rule of the policy set, by package, and what each package declares.
pub(super) struct RuleTable<'m> {
    /// The package of each module (`["data", "p"]`), in module order.
    pub(super) packages: Vec<Vec<String>>,
    /// Static head prefixes of every rule and function (`["data", "p",
    /// "x"]`), with how many rules (all kinds) have each.
    definitions: HashMap<Vec<String>, usize>,
    /// Single-definition complete rules with a plain name: the candidates,
    /// with the module they sit in.
    candidates: HashMap<Vec<String>, (&'m Rule, usize)>,
    /// Per package: names that may be local variables somewhere in it, and
    /// import aliases.
    pub(super) declared: HashMap<Vec<String>, HashSet<String>>,
    /// Per module: aliases of imports that are not `data` references.
    input_aliases: Vec<HashSet<String>>,
}

impl<'m> RuleTable<'m> {
    pub(super) fn build(modules: &'m [regorus::unstable::Ref<Module>]) -> RuleTable<'m> {
        let mut table = RuleTable {
            packages: Vec::new(),
            definitions: HashMap::new(),
            candidates: HashMap::new(),
            declared: HashMap::new(),
            input_aliases: Vec::new(),
        };
        let mut simple: Vec<(Vec<String>, &'m Rule, usize)> = Vec::new();
        for (index, module) in modules.iter().enumerate() {
            let mut package = vec!["data".to_string()];
            package.extend(static_path(&module.package.refr).0);
            let declared = table.declared.entry(package.clone()).or_default();
            let mut aliases = HashSet::new();
            for import in &module.imports {
                let target = import.refr.span().text();
                let alias = match &import.r#as {
                    Some(alias) => alias.text().to_string(),
                    None => target.rsplit('.').next().unwrap_or(target).to_string(),
                };
                if !target.starts_with("data") {
                    aliases.insert(alias.clone());
                }
                declared.insert(alias);
            }
            for rule in &module.policy {
                let head = head_ref(rule);
                let mut path = package.clone();
                path.extend(static_path(head).0);
                *table.definitions.entry(path.clone()).or_default() += 1;
                if let Rule::Spec {
                    head: RuleHead::Compr { refr, .. },
                    ..
                } = rule.as_ref()
                {
                    if matches!(refr.as_ref(), Expr::Var { .. }) {
                        simple.push((path.clone(), rule.as_ref(), index));
                    }
                }
                collect_declared(rule, declared);
            }
            table.packages.push(package);
            table.input_aliases.push(aliases);
        }
        for (path, rule, module) in simple {
            let alone = table.definitions.get(&path) == Some(&1)
                && !table
                    .definitions
                    .keys()
                    .any(|p| p.len() > path.len() && p.starts_with(&path));
            if alone {
                table.candidates.insert(path, (rule, module));
            }
        }
        table
    }

    /// The ground rules: candidates that reach nothing input-dependent,
    /// directly or through other rules.
    pub(super) fn ground(&self) -> Vec<Vec<String>> {
        let mut deps: HashMap<&Vec<String>, Vec<Vec<String>>> = HashMap::new();
        for (path, (rule, module)) in &self.candidates {
            let mut scan = Scan {
                table: self,
                package: &self.packages[*module],
                aliases: &self.input_aliases[*module],
                deps: Vec::new(),
                bad: false,
            };
            scan.rule(rule);
            if !scan.bad {
                deps.insert(path, scan.deps);
            }
        }
        loop {
            let before = deps.len();
            let keep: HashSet<Vec<String>> = deps
                .iter()
                .filter(|(_, d)| d.iter().all(|p| deps.contains_key(p)))
                .map(|(p, _)| (*p).clone())
                .collect();
            deps.retain(|p, _| keep.contains(*p));
            if deps.len() == before {
                break;
            }
        }
        let mut ground: Vec<Vec<String>> = deps.into_keys().cloned().collect();
        ground.sort();
        ground
    }
}

/// Whether a rule can depend on the input: walks its bodies and values.
struct Scan<'a, 'm> {
    table: &'a RuleTable<'m>,
    package: &'a Vec<String>,
    aliases: &'a HashSet<String>,
    deps: Vec<Vec<String>>,
    bad: bool,
}

impl Scan<'_, '_> {
    fn rule(&mut self, rule: &Rule) {
        let Rule::Spec { head, bodies, .. } = rule else {
            self.bad = true;
            return;
        };
        values(self, head, bodies);
    }

    /// A reference to a rule path: a dependency when it is a candidate, bad
    /// otherwise (a partial rule, a function, a virtual document).
    fn rule_ref(&mut self, path: &[String]) -> bool {
        if let Some(rule) = self
            .table
            .candidates
            .keys()
            .find(|c| path.starts_with(c.as_slice()))
        {
            self.deps.push(rule.clone());
            return true;
        }
        if self
            .table
            .definitions
            .keys()
            .any(|p| p.starts_with(path) || path.starts_with(p))
        {
            self.bad = true;
            return true;
        }
        false
    }
}

impl Pass for Scan<'_, '_> {
    const DECLARATIONS: bool = true;

    fn with_modifiers(&mut self) {
        self.bad = true;
    }

    fn expr(&mut self, expr: &Expr) {
        match expr {
            Expr::Var { span, .. } => {
                let name = span.text();
                if name == "input" || name == "data" || self.aliases.contains(name) {
                    self.bad = true;
                    return;
                }
                let mut path = self.package.clone();
                path.push(name.to_string());
                self.rule_ref(&path);
            }
            Expr::RefDot { .. } | Expr::RefBrack { .. } => {
                let (path, complete) = static_path(expr);
                if path.first().map(String::as_str) == Some("data") {
                    if path.len() == 1 {
                        self.bad = true; // `data[x]`: could reach anything
                    } else if !self.rule_ref(&path) && !complete {
                        // Base data under a dynamic index: fine, but a rule
                        // could sit below the index.
                        if self.table.definitions.keys().any(|p| p.starts_with(&path)) {
                            self.bad = true;
                        }
                    }
                    for index in dynamic_indexes(expr) {
                        self.expr(index);
                    }
                    return;
                }
                for child in children(expr) {
                    self.expr(child);
                }
            }
            Expr::Call { fcn, params, .. } => {
                let (name, _) = static_path(fcn);
                let dotted = name.join(".");
                // `data.x.f(..)`, a local `f(..)` or a dotted local `a.f(..)`:
                // anything under a rule or function path of the package.
                let user = name.first().map(String::as_str) == Some("data") || {
                    let mut path = self.package.clone();
                    path.extend(name.iter().take(1).cloned());
                    self.table.definitions.keys().any(|p| p.starts_with(&path))
                };
                if user || IMPURE_BUILTINS.contains(&dotted.as_str()) {
                    self.bad = true;
                }
                for param in params {
                    self.expr(param);
                }
            }
            _ => descend(self, expr),
        }
    }
}

/// Names that may be local variables anywhere in `rule`: `some` and `every`
/// variables, function arguments, both sides of `:=` and `=` (a
/// superset: a name listed here is never rewritten as a local reference).
fn collect_declared(rule: &Rule, out: &mut HashSet<String>) {
    let vars = walk_vars;
    match rule {
        Rule::Spec { head, bodies, .. } => {
            match head {
                RuleHead::Func { args, assign, .. } => {
                    for arg in args {
                        vars(arg, out);
                    }
                    if let Some(assign) = assign {
                        declared_in_expr(&assign.value, out);
                    }
                }
                RuleHead::Compr {
                    assign: Some(assign),
                    ..
                } => declared_in_expr(&assign.value, out),
                _ => {}
            }
            for body in bodies {
                if let Some(assign) = &body.assign {
                    declared_in_expr(&assign.value, out);
                }
                declared_in_query(&body.query, out);
            }
        }
        Rule::Default { args, .. } => {
            for arg in args {
                vars(arg, out);
            }
        }
    }
}

fn declared_in_query(query: &Query, out: &mut HashSet<String>) {
    for stmt in &query.stmts {
        match &stmt.literal {
            Literal::SomeVars { vars, .. } => {
                out.extend(vars.iter().map(|v| v.text().to_string()));
            }
            Literal::SomeIn {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(key) = key {
                    walk_vars(key, out);
                }
                walk_vars(value, out);
                declared_in_expr(collection, out);
            }
            Literal::Every {
                key,
                value,
                domain,
                query,
                ..
            } => {
                if let Some(key) = key {
                    out.insert(key.text().to_string());
                }
                out.insert(value.text().to_string());
                declared_in_expr(domain, out);
                declared_in_query(query, out);
            }
            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => {
                declared_in_expr(expr, out)
            }
        }
    }
}

/// Assignments and unifications anywhere in `expr` (comprehension bodies
/// included).
fn declared_in_expr(expr: &Expr, out: &mut HashSet<String>) {
    match expr {
        Expr::AssignExpr { lhs, rhs, op, .. } => {
            walk_vars(lhs, out);
            if matches!(op, AssignOp::Eq) {
                walk_vars(rhs, out);
            }
            declared_in_expr(rhs, out);
        }
        Expr::ArrayCompr { query, term, .. } | Expr::SetCompr { query, term, .. } => {
            declared_in_query(query, out);
            declared_in_expr(term, out);
        }
        Expr::ObjectCompr {
            query, key, value, ..
        } => {
            declared_in_query(query, out);
            declared_in_expr(key, out);
            declared_in_expr(value, out);
        }
        _ => {
            for child in children(expr) {
                declared_in_expr(child, out);
            }
        }
    }
}

/// Every variable name in `expr`.
fn walk_vars(expr: &Expr, out: &mut HashSet<String>) {
    if let Expr::Var { span, .. } = expr {
        out.insert(span.text().to_string());
    }
    for child in children(expr) {
        walk_vars(child, out);
    }
}
