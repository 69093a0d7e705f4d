//! The fast path against the interpreter on generated policy sets: seeded,
//! random, written the way authors write Rego (imports used through their
//! alias, constants to fold, definitions guarded by `input.scope`, helper
//! rules and functions in another package, `else` chains, partial sets and
//! objects, `every`, comprehensions, rules split across modules, references
//! between packages). Each query is answered three ways, which must agree:
//! - by regorus on the text as written (no import resolution, no folding,
//!   no fast path): checks the import rewrite. As written, `alias.rule`
//!   makes regorus evaluate the whole imported package, so an error in any
//!   of its rules (a conflict) surfaces there, and its evaluation of a
//!   whole package has a bug of its own (seed 544 of 1500: `data.p0` lacks
//!   a rule `data.p0.allow` that is `true`); OPA, like the resolved text,
//!   evaluates only the rule referenced. Such disagreements are counted
//!   and may be at most 1% of the queries (0.35% here, nearly all errors);
//!   a mistake in the rewrite would show far more;
//! - by the interpreter on the resolved text (the differential test's
//!   reference);
//! - as served: the fast path (folded constants, rule index copies) where
//!   it answers, else the interpreter; and the fast path's own answer when
//!   it has one.
//!
//! A mismatch prints the seed, the policy set and the input. `SEED=n` runs
//! one seed, `SEEDS=n` the first n; `SHOW=1` prints each policy set.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use regent::policy::{DataPath, EvalOptions, Evaluator, Outcome};
use regorus::Value;

const SCOPES: &[&str] = &["view", "list", "update", "delete", "create", "export"];
const ROLES: &[&str] = &["admin", "user", "worker", "none"];

const LIB: &str = r#"package lib
import rego.v1

ADMIN := "admin"
VIEW := "view"
READ := {"view", "list"}
WRITE := {"update", "delete"} | {"create"}
PRIO := {"admin": 3, "user": 2, "worker": 1}
ORDER := ["admin", "user", "worker"]

is_admin if input.user.role == ADMIN
rank := PRIO[input.user.role]
has_role(r) if r in input.user.roles
owner if input.resource.owner == input.user.id
owned contains r.id if {
	some r in input.resources
	r.owner == input.user.id
}
level := "high" if rank >= 3
	else := "mid" if rank >= 2
	else := "low"
"#;

/// How one module names things: the `lib` package, `lib.PRIO`, the user
/// object, and its imports.
struct Names {
    lib: &'static str,
    prio: String,
    user: &'static str,
    imports: Vec<String>,
}

struct Gen {
    rng: StdRng,
    /// Numbers the local variables, which may not be declared twice.
    vars: usize,
}

impl Gen {
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        from.choose(&mut self.rng).unwrap()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn int(&mut self, range: std::ops::RangeInclusive<i64>) -> i64 {
        self.rng.random_range(range)
    }

    fn names(&mut self) -> Names {
        let mut imports = vec!["import rego.v1".to_string()];
        let lib = match self.int(0..=2) {
            0 => {
                imports.push("import data.lib".into());
                "lib."
            }
            1 => {
                imports.push("import data.lib as l".into());
                "l."
            }
            _ => "data.lib.",
        };
        let prio = if self.chance(0.3) {
            imports.push("import data.lib.PRIO as table".into());
            "table".to_string()
        } else {
            format!("{lib}PRIO")
        };
        let user = if self.chance(0.3) {
            imports.push("import input.user as u".into());
            "u."
        } else {
            "input.user."
        };
        Names {
            lib,
            prio,
            user,
            imports,
        }
    }

    fn scopes(&mut self, most: usize) -> Vec<String> {
        let n = self.rng.random_range(1..=most);
        let mut all: Vec<&str> = SCOPES.to_vec();
        for i in 0..n {
            let j = self.rng.random_range(i..all.len());
            all.swap(i, j);
        }
        all[..n].iter().map(|s| format!("{s:?}")).collect()
    }

    /// A test of the input's scope (or, now and then, another field).
    fn guard(&mut self, n: &Names) -> String {
        let s = self.scopes(1).remove(0);
        match self.int(0..=10) {
            0 => format!("input.scope == {s}"),
            1 => format!("{s} == input.scope"),
            2 => format!("input.scope = {s}"),
            3 => format!("input.scope in {{{}}}", self.scopes(3).join(", ")),
            4 => format!("input.scope in [{}]", self.scopes(2).join(", ")),
            5 => format!("input.scope == {}VIEW", n.lib),
            6 => format!("input.scope in {}READ", n.lib),
            7 => format!("input.scope in {}WRITE | {{{s}}}", n.lib),
            8 => "input.scope == S_LOCAL".into(),
            9 => format!("input.kind == {s}"),
            _ => format!("input.scope != {s}"),
        }
    }

    /// One condition on the user or the resource: one or more statements.
    fn condition(&mut self, n: &Names) -> Vec<String> {
        let (lib, user) = (n.lib, n.user);
        let role = self.pick(ROLES);
        let k = self.int(1..=3);
        self.vars += 1;
        let v = self.vars;
        let one = match self.int(0..=17) {
            0 => format!("{lib}is_admin"),
            1 => format!("not {lib}is_admin"),
            2 => format!("{lib}has_role({role:?})"),
            3 => format!("{lib}rank >= {k}"),
            4 => format!("{lib}owner"),
            5 => format!("input.resource.id in {lib}owned"),
            6 => format!("{lib}level == {:?}", self.pick(&["high", "mid", "low"])),
            7 => format!("count({user}roles) > K"),
            8 => {
                return vec![
                    format!("some r{v} in {user}roles"),
                    format!("r{v} == {role:?}"),
                ]
            }
            9 => format!("every r in {user}roles {{\n\t\tr != \"banned\"\n\t}}"),
            10 => format!("{}[{user}role] > {k}", n.prio),
            11 => format!("object.get(input, [\"resource\", \"owner\"], 0) == {user}id"),
            12 => format!("startswith({user}role, \"a\")"),
            13 => format!("{user}id + 1 > {k}"),
            14 => "helper".into(),
            15 => {
                return vec![
                    format!("x{v} := {}[{user}role]", n.prio),
                    format!("x{v} > K"),
                ]
            }
            16 => format!("{user}role in {lib}ORDER"),
            _ => format!("count({user}roles) < data.settings.max"),
        };
        vec![one]
    }

    /// A condition on one resource `r` of `input.resources`.
    fn resource_condition(&mut self, n: &Names) -> String {
        match self.int(0..=4) {
            0 => format!("r.owner == {}id", n.user),
            1 => format!("{}is_admin", n.lib),
            2 => format!("r.id in {}owned", n.lib),
            3 => "r.public == true".into(),
            _ => format!("r.owner != {}id", n.user),
        }
    }

    /// A body: leading guards, then conditions (now and then a guard after
    /// a condition, which the index must not use).
    fn body(&mut self, n: &Names, guards: usize) -> String {
        let mut statements = Vec::new();
        for _ in 0..guards {
            statements.push(self.guard(n));
        }
        for _ in 0..self.int(1..=2) {
            statements.extend(self.condition(n));
        }
        if self.chance(0.1) {
            statements.push(self.guard(n));
        }
        let lines: Vec<String> = statements.iter().map(|s| format!("\t{s}")).collect();
        format!("{{\n{}\n}}", lines.join("\n"))
    }

    /// Package `index`: its modules and the documents to query.
    fn package(&mut self, index: usize, all: &[String]) -> (Vec<String>, Vec<String>) {
        let name = all[index].clone();
        let modules = if self.chance(0.3) { 2 } else { 1 };
        let names: Vec<Names> = (0..modules).map(|_| self.names()).collect();
        let mut texts: Vec<Vec<String>> = names
            .iter()
            .map(|n| {
                let mut t = vec![format!("package {name}")];
                t.extend(n.imports.iter().cloned());
                t
            })
            .collect();
        let mut rules = Vec::new();
        let k = self.int(0..=2);
        let local = self.pick(SCOPES);
        texts[0].push(format!("K := {k}"));
        texts[0].push(format!("S_LOCAL := {local:?}"));
        // Any condition but the helper itself (a rule depending on itself
        // is refused, as OPA refuses it).
        let helper = loop {
            let c = self.condition(&names[0]);
            if c != ["helper"] {
                break c.join("\n\t");
            }
        };
        texts[0].push(format!("helper if {{\n\t{helper}\n}}"));
        rules.push("helper".to_string());

        // `allow`: several definitions, most of them guarded, spread over
        // the package's modules.
        if self.chance(0.8) {
            texts[0].push("default allow := false".into());
        }
        for _ in 0..self.int(1..=6) {
            let m = self.rng.random_range(0..modules);
            let guards = *self.pick(&[0, 1, 1, 1, 2]);
            let body = self.body(&names[m], guards);
            texts[m].push(format!("allow if {body}"));
        }
        rules.push("allow".into());

        let m = self.rng.random_range(0..modules);
        let cond = self.resource_condition(&names[m]);
        texts[m].push(format!(
            "filter := [r.id | some r in input.resources; {cond}]"
        ));
        rules.push("filter".into());

        for _ in 0..self.int(0..=2) {
            let m = self.rng.random_range(0..modules);
            let guard = match self.chance(0.6) {
                true => format!("\t{}\n", self.guard(&names[m])),
                false => String::new(),
            };
            let cond = self.resource_condition(&names[m]);
            texts[m].push(format!(
                "visible contains r.id if {{\n{guard}\tsome r in input.resources\n\t{cond}\n}}"
            ));
            if !rules.contains(&"visible".to_string()) {
                rules.push("visible".into());
            }
        }
        if self.chance(0.5) {
            let cond = self.resource_condition(&names[0]);
            texts[0].push(format!(
                "info[r.id] := r.owner if {{\n\tsome r in input.resources\n\t{cond}\n}}"
            ));
            rules.push("info".into());
        }
        if self.chance(0.5) {
            texts[0].push("verdict := \"yes\" if allow else := \"no\"".into());
            rules.push("verdict".into());
        }
        if self.chance(0.4) {
            // A complete rule with guarded definitions that can disagree.
            if self.chance(0.5) {
                texts[0].push("default mode := \"none\"".into());
            }
            for value in ["a", "b"] {
                let guard = self.guard(&names[0]);
                texts[0].push(format!("mode := {value:?} if {guard}"));
            }
            rules.push("mode".into());
        }
        if self.chance(0.4) {
            texts[0].push("f(x) := x * 2 if x > K".into());
            texts[0].push("f(x) := x if x <= K".into());
            texts[0].push("scores := [f(v) | some v in input.nums]".into());
            rules.push("scores".into());
        }
        if self.chance(0.4) {
            texts[0].push(
                "deny contains msg if {\n\tnot allow\n\tmsg := sprintf(\"denied %v\", [input.scope])\n}"
                    .into(),
            );
            rules.push("deny".into());
        }
        if self.chance(0.5) {
            texts[0].push(format!("level_of := {}level", names[0].lib));
            rules.push("level_of".into());
        }
        if index > 0 && self.chance(0.6) {
            // A rule reading an earlier package's (maybe indexed) rule.
            let other = &all[self.rng.random_range(0..index)];
            let reference = if self.chance(0.5) {
                texts[0].push(format!("import data.{other} as other"));
                "other.allow".to_string()
            } else {
                format!("data.{other}.allow")
            };
            texts[0].push(format!(
                "cross if {{\n\t{reference}\n\tinput.scope != \"export\"\n}}"
            ));
            rules.push("cross".into());
        }
        // Imports must precede the rules: move late ones up.
        let texts = texts
            .into_iter()
            .map(|lines| {
                let (head, body): (Vec<String>, Vec<String>) = lines
                    .into_iter()
                    .partition(|l| l.starts_with("package ") || l.starts_with("import "));
                format!("{}\n\n{}\n", head.join("\n"), body.join("\n\n"))
            })
            .collect();
        (texts, rules)
    }

    fn input(&mut self) -> String {
        let mut fields = Vec::new();
        if !self.chance(0.1) {
            let scope = match self.int(0..=9) {
                0 => "\"other\"".to_string(),
                1 => "1".into(),
                2 => "null".into(),
                3 => "[\"view\"]".into(),
                _ => format!("{:?}", self.pick(SCOPES)),
            };
            fields.push(format!("\"scope\": {scope}"));
        }
        if self.chance(0.3) {
            fields.push(format!("\"kind\": {:?}", self.pick(SCOPES)));
        }
        if !self.chance(0.1) {
            let role = match self.int(0..=6) {
                0 => "7".to_string(),
                _ => format!("{:?}", self.pick(ROLES)),
            };
            let roles: Vec<String> = (0..self.int(0..=3))
                .map(|_| format!("{:?}", self.pick(&["admin", "user", "banned", "x"])))
                .collect();
            let id = self.int(1..=3);
            fields.push(format!(
                "\"user\": {{\"id\": {id}, \"role\": {role}, \"roles\": [{}]}}",
                roles.join(", ")
            ));
        }
        if self.chance(0.8) {
            fields.push(format!(
                "\"resource\": {{\"id\": {}, \"owner\": {}}}",
                self.int(1..=4),
                self.int(1..=3)
            ));
        }
        let resources: Vec<String> = (1..=self.int(0..=4))
            .map(|id| {
                format!(
                    "{{\"id\": {id}, \"owner\": {}, \"public\": {}}}",
                    self.int(1..=3),
                    self.chance(0.3)
                )
            })
            .collect();
        fields.push(format!("\"resources\": [{}]", resources.join(", ")));
        if self.chance(0.5) {
            let nums: Vec<String> = (0..self.int(0..=3))
                .map(|_| self.int(-1..=4).to_string())
                .collect();
            fields.push(format!("\"nums\": [{}]", nums.join(", ")));
        }
        format!("{{{}}}", fields.join(", "))
    }
}

fn outcome(r: Result<Outcome, String>) -> String {
    match r {
        Ok(Outcome::Defined(v)) => serde_json::to_string(&v).unwrap(),
        Ok(Outcome::Undefined) => "<undefined>".into(),
        Err(_) => "<error>".into(),
    }
}

/// regorus on the text as written: no import resolution, no fast path.
fn as_written(engine: &regorus::Engine, path: &str, input: &Value) -> String {
    let mut engine = engine.clone();
    engine.set_input(input.clone());
    outcome(
        engine
            .eval_rule(path.to_string())
            .map(Outcome::from_value)
            .map_err(|e| e.to_string()),
    )
}

/// What the generated policy sets exercised, to keep the test honest.
#[derive(Default, Debug)]
struct Seen {
    sets: usize,
    queries: usize,
    fast: usize,
    indexed_sets: usize,
    copies: usize,
    folded: usize,
    defined_true: usize,
    as_written_differs: usize,
    elsewhere: std::collections::BTreeMap<String, usize>,
}

/// Every query of one generated policy set on its inputs: the mismatches.
fn check_set(seed: u64, seen: &mut Seen) -> Vec<String> {
    let mut gen = Gen {
        rng: StdRng::seed_from_u64(seed),
        vars: 0,
    };
    let packages: Vec<String> = (0..gen.int(1..=3))
        .map(|i| match gen.chance(0.3) {
            true => format!("app.p{i}"),
            false => format!("p{i}"),
        })
        .collect();
    let mut modules = vec![("lib.rego".to_string(), LIB.to_string())];
    let mut queries = vec!["data.lib.level".to_string(), "data.lib.owned".to_string()];
    for i in 0..packages.len() {
        let (texts, rules) = gen.package(i, &packages);
        for (m, text) in texts.into_iter().enumerate() {
            modules.push((format!("p{i}_{m}.rego"), text));
        }
        queries.extend(rules.iter().map(|r| format!("data.{}.{r}", packages[i])));
    }
    let data = Value::from_json_str(r#"{"settings": {"max": 2}}"#).unwrap();
    let listing = || {
        modules
            .iter()
            .map(|(id, t)| format!("# {id}\n{t}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if std::env::var_os("SHOW").is_some() {
        eprintln!("{}", listing());
    }
    let evaluator = Evaluator::build(
        modules.iter().map(|(id, t)| (id.as_str(), t.as_str())),
        data.clone(),
    )
    .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", listing()));
    let mut written = regorus::Engine::new();
    written.set_strict_builtin_errors(false);
    for (id, text) in &modules {
        written.add_policy(id.clone(), text.clone()).unwrap();
    }
    written.add_data(data).unwrap();

    seen.sets += 1;
    let (copies, planned) = evaluator.indexed_copies();
    assert_eq!(copies, planned, "seed {seed}: copies lost\n{}", listing());
    seen.copies += copies;
    seen.indexed_sets += usize::from(copies > 0);
    seen.folded += evaluator.folded_rules().len();

    let mut mismatches = Vec::new();
    for _ in 0..24 {
        let text = gen.input();
        let input = Value::from_json_str(&text).unwrap();
        for query in &queries {
            let path = DataPath::parse(&query["data.".len()..].replace('.', "/"));
            let reference = outcome(
                evaluator
                    .evaluate_interpreted(&path, Some(input.clone()), EvalOptions::default())
                    .map_err(|e| e.to_string()),
            );
            let mut answers = vec![
                ("as written", as_written(&written, query, &input)),
                (
                    "served",
                    outcome(
                        evaluator
                            .evaluate(&path, Some(input.clone()), EvalOptions::default())
                            .map_err(|e| e.to_string()),
                    ),
                ),
            ];
            match evaluator.evaluate_fast(&path, Some(input.clone())) {
                Some(Ok(fast)) => {
                    seen.fast += 1;
                    answers.push(("fast path", outcome(Ok(fast))));
                }
                other => {
                    let rule = query.rsplit('.').next().unwrap();
                    let why = match other {
                        None => "not an entry point".to_string(),
                        Some(Err(reason)) => reason,
                        Some(Ok(_)) => unreachable!(),
                    };
                    *seen.elsewhere.entry(format!("{rule}: {why}")).or_default() += 1;
                }
            }
            seen.queries += 1;
            seen.defined_true += usize::from(reference == "true");
            for (who, answer) in answers {
                if who == "as written" && answer != reference {
                    // See the module's header.
                    seen.as_written_differs += 1;
                    continue;
                }
                if answer != reference {
                    mismatches.push(format!(
                        "seed {seed}: {query} with {text}: {who} {answer}, interpreter {reference}\n{}",
                        listing()
                    ));
                }
            }
        }
        // The packages whole, as `GET /v1/data/<package>` reads them: the
        // copies of indexed rules must not show.
        for package in &packages {
            let path = DataPath::parse(&package.replace('.', "/"));
            let reference = outcome(
                evaluator
                    .evaluate_interpreted(&path, Some(input.clone()), EvalOptions::default())
                    .map_err(|e| e.to_string()),
            );
            let served = outcome(
                evaluator
                    .evaluate(&path, Some(input.clone()), EvalOptions::default())
                    .map_err(|e| e.to_string()),
            );
            if served != reference {
                mismatches.push(format!(
                    "seed {seed}: data.{package} with {text}: served {served}, interpreter {reference}\n{}",
                    listing()
                ));
            }
        }
    }
    mismatches
}

#[test]
fn fast_path_equals_interpreter_on_generated_policy_sets() {
    let mut seen = Seen::default();
    let mut mismatches = Vec::new();
    let seeds = match (std::env::var("SEED"), std::env::var("SEEDS")) {
        (Ok(seed), _) => seed.parse().unwrap()..seed.parse::<u64>().unwrap() + 1,
        (_, Ok(seeds)) => 0..seeds.parse().unwrap(),
        _ => 0..150,
    };
    for seed in seeds {
        mismatches.extend(check_set(seed, &mut seen));
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(3)].join("\n\n")
    );
    eprintln!("{seen:?}");
    // The sets must exercise what the test is for.
    assert!(seen.fast * 4 > seen.queries * 3, "{seen:?}");
    assert!(seen.as_written_differs * 100 < seen.queries, "{seen:?}");
    assert!(seen.indexed_sets * 2 > seen.sets, "{seen:?}");
    assert!(seen.folded > seen.sets, "{seen:?}");
    assert!(seen.defined_true * 20 > seen.queries, "{seen:?}");
}
