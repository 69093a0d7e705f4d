//! Recursive rules. OPA's compiler refuses a policy in which a rule depends
//! on itself, directly or through other rules and functions
//! (`rego_recursion_error`: `rule p is recursive: p -> q -> p`). regorus has
//! no such check: evaluating such a rule recurses until the thread's stack
//! overflows, which aborts the whole process. So every policy set is checked
//! when it is built (a start, a reload, a bundle, a policy write) and one
//! with a cycle is refused, never replacing the last good one.
//!
//! The dependency graph is OPA's: a rule depends on every rule that a
//! reference in it reaches. `data.a.b.c` reaches the rules at `data.a.b.c`,
//! those above it (`data.a.b`) and those below it (`data.a.b.c.d`); a
//! dynamic index ends the static part (`data.a[x]` reaches every rule under
//! `data.a`, a bare `data` every rule). Names are resolved in their scope
//! (see [`References`]): a plain name is a rule of the package when the
//! package has one and no local hides it; an import alias stands for its
//! import. The value of a `with` counts, its target does not.
//!
//! On the same graph, without cycles, the depth of each rule's evaluation
//! is bounded ([`MAX_EVAL_DEPTH`]): regorus recurses through a chain of
//! rules as it does through a cycle, only not forever.

use std::collections::{HashMap, HashSet, VecDeque};

use petgraph::graph::{DiGraph, NodeIndex};
use regorus::unstable::{AssignOp, Expr, Literal, Query, Rule, RuleHead};
use regorus::Engine;

use super::eval::Location;
use super::fold::ast::{
    children, comprehension_query, dynamic_indexes, head_ref, import_aliases, static_path,
};
use super::rule_index::{ref_segments, RuleNames};

/// The deepest evaluation accepted, in levels: each rule on a chain of
/// dependencies counts [`RULE_LEVEL`] plus the depth of its expressions.
/// regorus evaluates a chain of rules recursively (2,000 rules, each
/// reading the next, overflowed a worker's stack and aborted the process);
/// 1000 levels take under 2 MiB even in a debug build.
pub const MAX_EVAL_DEPTH: usize = 1000;

/// What one rule on a dependency chain costs, besides its expressions.
const RULE_LEVEL: usize = 2;

/// A rule path: its name, where it is first defined, and how deep its
/// definitions' expressions nest.
struct Named {
    name: String,
    at: Location,
    depth: usize,
}

/// The dependency graph of a policy set's rules: one node per rule path
/// (`["data", "p", "allow"]`), an edge from each rule to every rule it
/// reads or calls.
pub struct Dependencies {
    graph: DiGraph<Named, ()>,
    nodes: HashMap<Vec<String>, NodeIndex>,
}

impl Dependencies {
    /// The first rule (in module order) that depends on itself, as OPA
    /// words it, or else the first whose evaluation would nest deeper than
    /// [`MAX_EVAL_DEPTH`]; and where it is defined.
    pub fn first_problem(&self) -> Option<(String, Location)> {
        first_cycle(&self.graph).or_else(|| too_deep(&self.graph))
    }

    /// The rule paths whose evaluation can reach one of `targets` (rule
    /// paths), `targets` included.
    pub fn reaching(&self, targets: &[Vec<String>]) -> HashSet<Vec<String>> {
        let mut reached: HashSet<NodeIndex> = HashSet::new();
        let mut queue: VecDeque<NodeIndex> = targets
            .iter()
            .filter_map(|t| self.nodes.get(t).copied())
            .collect();
        while let Some(node) = queue.pop_front() {
            if reached.insert(node) {
                queue.extend(
                    self.graph
                        .neighbors_directed(node, petgraph::Direction::Incoming),
                );
            }
        }
        self.nodes
            .iter()
            .filter(|(_, node)| reached.contains(node))
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// `names`: [`rule_names`](super::rule_index::rule_names) of the same
    /// engine.
    pub fn of(engine: &mut Engine, names: &RuleNames) -> Dependencies {
        let no_rules = HashSet::new();
        let modules = engine.get_modules();
        // One node per rule path; the first definition of each names it.
        let mut graph: DiGraph<Named, ()> = DiGraph::new();
        let mut nodes: HashMap<Vec<String>, NodeIndex> = HashMap::new();
        let mut rules = Vec::new();
        for module in modules.iter() {
            let Some(package) = ref_segments(&module.package.refr) else {
                continue;
            };
            let mut aliases = import_aliases(module);
            aliases.retain(|_, path| path[0] == "data");
            let aliases = std::rc::Rc::new(aliases);
            for rule in &module.policy {
                let refr = head_ref(rule);
                let (name, _) = static_path(refr);
                if name.is_empty() {
                    continue;
                }
                let path: Vec<String> = std::iter::once("data".to_string())
                    .chain(package.iter().cloned())
                    .chain(name.iter().cloned())
                    .collect();
                let node = *nodes.entry(path).or_insert_with(|| {
                    graph.add_node(Named {
                        name: name.join("."),
                        at: Location::at(refr.span()),
                        depth: 0,
                    })
                });
                let depth = super::nesting::rule_depth(rule).unwrap_or(MAX_EVAL_DEPTH);
                graph[node].depth = graph[node].depth.max(depth);
                rules.push((node, rule, package.clone(), aliases.clone()));
            }
        }
        // Every proper prefix of a rule path -> the rules below it.
        let mut below: HashMap<&[String], Vec<NodeIndex>> = HashMap::new();
        for (path, node) in &nodes {
            for end in 1..path.len() {
                below.entry(&path[..end]).or_default().push(*node);
            }
        }
        // Every edge, as a set (the graph's own lookup is linear).
        let mut edges = HashSet::new();
        for (node, rule, package, aliases) in &rules {
            let mut scan = References {
                package,
                aliases,
                rules: names.get(package.as_slice()).unwrap_or(&no_rules),
                scopes: Vec::new(),
                found: Vec::new(),
            };
            scan.rule(rule);
            for reference in &scan.found {
                let above = (1..=reference.len()).filter_map(|end| nodes.get(&reference[..end]));
                let under = below.get(reference.as_slice()).into_iter().flatten();
                for target in above.chain(under) {
                    if edges.insert((*node, *target)) {
                        graph.add_edge(*node, *target, ());
                    }
                }
            }
        }
        Dependencies { graph, nodes }
    }
}

/// The first rule (in module order: node indices follow it) on a cycle:
/// OPA's message for it, and where it is defined.
fn first_cycle(graph: &DiGraph<Named, ()>) -> Option<(String, Location)> {
    let cyclic = petgraph::algo::tarjan_scc(graph)
        .into_iter()
        .filter(|scc| scc.len() > 1 || graph.contains_edge(scc[0], scc[0]))
        .flatten();
    let first = cyclic.min()?;
    let names: Vec<&str> = cycle_through(graph, first)
        .iter()
        .map(|n| graph[*n].name.as_str())
        .collect();
    let Named { name, at, .. } = &graph[first];
    let message = format!("rule {name} is recursive: {}", names.join(" -> "));
    Some((message, at.clone()))
}

/// The first rule (in module order) whose evaluation, through the rules it
/// depends on, would nest deeper than [`MAX_EVAL_DEPTH`]; `graph` has no
/// cycle.
fn too_deep(graph: &DiGraph<Named, ()>) -> Option<(String, Location)> {
    let order = petgraph::algo::toposort(graph, None).ok()?;
    let mut levels = vec![0usize; graph.node_count()];
    // Dependencies before the rules that read them.
    for node in order.iter().rev() {
        let below = graph.neighbors(*node).map(|n| levels[n.index()]).max();
        levels[node.index()] = graph[*node].depth + RULE_LEVEL + below.unwrap_or(0);
    }
    let first = (0..levels.len()).find(|i| levels[*i] > MAX_EVAL_DEPTH)?;
    let Named { name, at, .. } = &graph[NodeIndex::new(first)];
    let message = format!(
        "rule {name} nests too deeply: evaluating it goes {} levels deep through the rules it \
         depends on (the limit is {MAX_EVAL_DEPTH})",
        levels[first]
    );
    Some((message, at.clone()))
}

/// The shortest path from `start` back to itself (both ends included).
fn cycle_through(graph: &DiGraph<Named, ()>, start: NodeIndex) -> Vec<NodeIndex> {
    let mut came_from: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        for next in graph.neighbors(at) {
            if next == start {
                let mut path = vec![start, at];
                let mut back = at;
                while back != start {
                    back = came_from[&back];
                    path.push(back);
                }
                path.reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = came_from.entry(next) {
                e.insert(at);
                queue.push_back(next);
            }
        }
    }
    vec![start, start]
}

/// The rule paths one rule references, absolute (`["data", "p", "x"]`),
/// cut at the first dynamic index. Names are resolved as OPA resolves them:
/// a name declared in the enclosing scope (a function's arguments; a body's
/// `:=`, `some` and `some ... in` names, each `else` body on its own; a
/// comprehension's or an `every`'s own) is a local; an import alias stands
/// for its import; another name is a rule of the package if it has one.
struct References<'a> {
    package: &'a [String],
    aliases: &'a HashMap<String, Vec<String>>,
    /// The first segment of every rule head of the package.
    rules: &'a HashSet<String>,
    scopes: Vec<HashSet<String>>,
    found: Vec<Vec<String>>,
}

impl References<'_> {
    fn rule(&mut self, rule: &Rule) {
        let (args, bodies) = match rule {
            Rule::Spec { head, bodies, .. } => match head {
                RuleHead::Func { args, .. } => (args.as_slice(), bodies.as_slice()),
                _ => (&[][..], bodies.as_slice()),
            },
            Rule::Default { args, value, .. } => {
                self.scopes.push(declared_in_patterns(args));
                self.expr(value);
                self.scopes.pop();
                return;
            }
        };
        self.scopes.push(declared_in_patterns(args));
        if bodies.iter().all(|b| b.is_else) {
            self.head(rule);
        }
        for body in bodies {
            self.scopes.push(declared(&body.query));
            match &body.assign {
                Some(assign) if body.is_else => self.expr(&assign.value),
                _ if !body.is_else => self.head(rule),
                _ => {}
            }
            self.query(&body.query);
            self.scopes.pop();
        }
        self.scopes.pop();
    }

    /// What a rule's head computes: its value, a set rule's key, the
    /// computed keys of its reference.
    fn head(&mut self, rule: &Rule) {
        let Rule::Spec { head, .. } = rule else {
            return;
        };
        match head {
            RuleHead::Compr { assign, .. } | RuleHead::Func { assign, .. } => {
                if let Some(assign) = assign {
                    self.expr(&assign.value);
                }
            }
            RuleHead::Set { key, .. } => {
                if let Some(key) = key {
                    self.expr(key);
                }
            }
        }
        for index in dynamic_indexes(head_ref(rule)) {
            self.expr(index);
        }
    }

    fn query(&mut self, query: &Query) {
        for stmt in &query.stmts {
            for modifier in &stmt.with_mods {
                self.expr(&modifier.r#as);
            }
            match &stmt.literal {
                Literal::SomeVars { .. } => {}
                Literal::SomeIn { collection, .. } => self.expr(collection),
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr),
                Literal::Every {
                    key,
                    value,
                    domain,
                    query,
                    ..
                } => {
                    self.expr(domain);
                    let mut scope = declared(query);
                    scope.extend(key.iter().map(|k| k.text().to_string()));
                    scope.insert(value.text().to_string());
                    self.scopes.push(scope);
                    self.query(query);
                    self.scopes.pop();
                }
            }
        }
    }

    fn expr(&mut self, expr: &Expr) {
        if let Some(query) = comprehension_query(expr) {
            self.scopes.push(declared(query));
            self.query(query);
            for child in children(expr) {
                self.expr(child);
            }
            self.scopes.pop();
            return;
        }
        match expr {
            // A reference that starts at a name (not at a call or a literal).
            Expr::Var { .. } | Expr::RefDot { .. } | Expr::RefBrack { .. }
                if !static_path(expr).0.is_empty() =>
            {
                self.reference(static_path(expr).0, true);
                for index in dynamic_indexes(expr) {
                    self.expr(index);
                }
            }
            Expr::Call { fcn, params, .. } => {
                // regorus resolves a call's name without looking at locals.
                match static_path(fcn) {
                    (name, true) => self.reference(name, false),
                    _ => self.expr(fcn),
                }
                for param in params {
                    self.expr(param);
                }
            }
            _ => {
                for child in children(expr) {
                    self.expr(child);
                }
            }
        }
    }

    /// Records `path`; `scoped`: a local of that name hides it.
    fn reference(&mut self, path: Vec<String>, scoped: bool) {
        let first = path[0].as_str();
        if first == "_" || (scoped && self.scopes.iter().any(|s| s.contains(first))) {
            return;
        }
        let absolute = if let Some(import) = self.aliases.get(first) {
            import.iter().chain(&path[1..]).cloned().collect()
        } else if first == "data" {
            path
        } else if self.rules.contains(first) {
            std::iter::once("data".to_string())
                .chain(self.package.iter().cloned())
                .chain(path)
                .collect()
        } else {
            return; // `input`, a built-in, an unbound variable
        };
        self.found.push(absolute);
    }
}

/// The names a query declares at its own level: `some` names, the key and
/// value of `some ... in`, the variables on the left of `:=` (a
/// unification `=` declares nothing: a rule's name there is the rule).
fn declared(query: &Query) -> HashSet<String> {
    let mut out = HashSet::new();
    for stmt in &query.stmts {
        match &stmt.literal {
            Literal::SomeVars { vars, .. } => out.extend(vars.iter().map(|v| v.text().to_string())),
            Literal::SomeIn { key, value, .. } => {
                key.iter().for_each(|k| names(k, &mut out));
                names(value, &mut out);
            }
            Literal::Expr { expr, .. } => {
                if let Expr::AssignExpr {
                    op: AssignOp::ColEq,
                    lhs,
                    ..
                } = expr.as_ref()
                {
                    names(lhs, &mut out);
                }
            }
            Literal::NotExpr { .. } | Literal::Every { .. } => {}
        }
    }
    out
}

/// The variables of function argument patterns.
fn declared_in_patterns(args: &[regorus::unstable::Ref<Expr>]) -> HashSet<String> {
    let mut out = HashSet::new();
    args.iter().for_each(|a| names(a, &mut out));
    out
}

/// Every variable of a declared pattern (`[a, {"k": b}]`), not the names
/// inside references in it.
fn names(expr: &Expr, out: &mut HashSet<String>) {
    match expr {
        Expr::Var { span, .. } => {
            out.insert(span.text().to_string());
        }
        Expr::RefDot { .. } | Expr::RefBrack { .. } | Expr::Call { .. } => {}
        _ => children(expr).into_iter().for_each(|c| names(c, out)),
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::refusal;

    fn one(text: &str) -> Option<String> {
        refusal(&[("p.rego", text)])
    }

    #[test]
    fn cycles_are_refused_as_opa_words_them() {
        let p = "package p\nimport rego.v1\n";
        assert_eq!(
            one(&format!("{p}helper if helper\nallow if helper\n")).as_deref(),
            Some("p.rego:3:1: rule helper is recursive: helper -> helper")
        );
        assert_eq!(
            one(&format!("{p}a if b\nb if c\nc if a\n")).as_deref(),
            Some("p.rego:3:1: rule a is recursive: a -> b -> c -> a")
        );
        // Functions, `else`, partial rules, comprehensions.
        let cases = [
            "f(x) := f(x)\n",
            "f(x) := y if y := g(x)\ng(x) := f(x)\n",
            "x := 1 if input.a else := x\n",
            "s contains v if some v in t\nt contains v if some v in s\n",
            "x := [y | some y in x]\n",
            "x if { every v in input.vs { v == y } }\ny if x\n",
            "x := 1 if input.a with input.b as y\ny := x\n",
            // A local of one body (or comprehension, or `every`) does not
            // hide the rule in another.
            "f(x) := 1 if { g := input.limit; x > g } else := g(x)\ng(x) := f(x)\n",
            // A call's name is never a local.
            "f(x) := y if { g := 1; y := g(x) }\ng(x) := f(x)\n",
            "f(x) := y if { n := [g | g := input.gs[_]]; count(n) > 0; y := g(x) }\ng(x) := f(x)\n",
            "f(x) := g(x) if { every g in input.gs { g > 0 } }\ng(x) := f(x)\n",
        ];
        for case in cases {
            let err = one(&format!("{p}{case}"));
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains(" is recursive: ")),
                "{case}: {err:?}"
            );
        }
        // Through the package, `data` and another package's import alias.
        assert!(one(&format!("{p}x if data.p\n")).is_some());
        assert!(one(&format!("{p}x if data[input.k]\n")).is_some());
        assert!(one(&format!("{p}x := count(data.p)\n")).is_some());
        let err = refusal(&[
            (
                "a.rego",
                "package a\nimport rego.v1\nimport data.b as other\nx if other.y\n",
            ),
            (
                "b.rego",
                "package b\nimport rego.v1\nimport data.a\ny if a.x\n",
            ),
        ]);
        assert_eq!(
            err.as_deref(),
            Some("a.rego:4:1: rule x is recursive: x -> y -> x")
        );
    }

    #[test]
    fn chains_of_rules_deeper_than_the_limit_are_refused() {
        let chain = |n: usize| {
            let rules: Vec<String> = (0..n).map(|i| format!("r{i} if r{}", i + 1)).collect();
            format!(
                "package p\nimport rego.v1\n{}\nr{n} if input.x\n",
                rules.join("\n")
            )
        };
        assert_eq!(one(&chain(200)), None);
        let err = one(&chain(2000)).unwrap();
        assert!(
            err.starts_with("p.rego:3:1: rule r0 nests too deeply: evaluating it goes "),
            "{err}"
        );
        // Functions count, and so does the depth of each rule's expressions.
        let terms = vec!["1"; 400].join(" +\n");
        let deep = format!(
            "package p\nimport rego.v1\nf(x) := x + {terms}\ng(x) := f(x) + {terms}\nh := g(1) + {terms}\n"
        );
        let err = one(&deep).unwrap();
        assert!(err.contains("rule h nests too deeply"), "{err}");
    }

    #[test]
    fn locals_and_other_rules_named_alike_are_not_cycles() {
        let p = "package p\nimport rego.v1\n";
        let fine = [
            // Locals named like the rule.
            "x if { x := input.a; x }\n",
            "x if { every x in input.xs { x } }\n",
            "f(f) := f + 1\n",
            // The same name in another package, a field, a string.
            "x if data.q.x\n",
            "x if input.x\ny := {\"x\": 1}.x\n",
            "x if \"x\" == input.a\n",
            // A name the package has no rule for is a variable, even where
            // a package below has that name.
            "allow if { input.roles[role]; data.q.grants[role] }\n",
            // A rule reading a sibling, the sibling not reading back.
            "a if b\nb if input.b\nc := [a, b]\n",
        ];
        let refused: Vec<(&str, String)> = fine
            .iter()
            .filter_map(|case| Some((*case, one(&format!("{p}{case}"))?)))
            .collect();
        assert!(refused.is_empty(), "{refused:#?}");
        let below = "package p.role\nimport rego.v1\nok if data.p.allow\n";
        let allow = "package p\nimport rego.v1\nallow if { input.roles[role]; role == \"a\" }\n";
        assert_eq!(refusal(&[("p.rego", allow), ("role.rego", below)]), None);
        let q = "package q\nimport rego.v1\nx := 1\n";
        assert_eq!(
            refusal(&[("p.rego", &format!("{p}x if data.q.x\n")), ("q.rego", q)]),
            None
        );
    }
}
