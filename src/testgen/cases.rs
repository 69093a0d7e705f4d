//! Enumerating the test cases of one table: every scope x context x
//! privilege x org role x ownership relation x organization of the resource
//! x free-plan count x Limit value (x analytics access), each with a name and
//! the verdict of the oracle. Identical input documents are kept once.

use std::collections::HashSet;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::input::{self, Ctx, Model, Shape, ORG_ID, OTHER_ORG_ID};
use super::oracle;
use super::table::{Table, ORG_ROLES, PRIVILEGES};

pub struct Case {
    pub scope: String,
    pub name: String,
    pub input: Value,
    pub allowed: bool,
}

/// One value of a dimension: its name token (empty: not named) and how it
/// changes the resource.
#[derive(Clone)]
struct Variant {
    token: String,
    apply: Edit,
}

#[derive(Clone)]
enum Edit {
    Nothing,
    Relation(String),
    Orgs(Option<i64>),
    Set(Vec<String>, Value),
}

impl Variant {
    fn new(token: impl Into<String>, apply: Edit) -> Variant {
        Variant {
            token: token.into(),
            apply,
        }
    }
}

/// The cases of `table`, in a stable order.
pub fn cases(table: &Table) -> Result<Vec<Case>> {
    let model = input::model(&table.package)?;
    let limit_dims = limit_dimensions(table);
    let mut out = Vec::new();
    let mut inputs = HashSet::new();
    let mut names = HashSet::new();
    for scope in table.scopes() {
        let has_resource = model.shape == Shape::Object && scope != "list";
        let analytics: Vec<Option<bool>> = if table.has_analytics_column() {
            vec![Some(true), Some(false)]
        } else {
            vec![None]
        };
        for ctx in Ctx::ALL {
            let roles: Vec<Option<&str>> = match ctx {
                Ctx::Org => ORG_ROLES.iter().map(|r| Some(*r)).chain([None]).collect(),
                _ => vec![None],
            };
            let mut dims = Vec::new();
            if has_resource {
                dims.push(relation_dimension(table));
                dims.push(org_dimension(&model, ctx));
                dims.push(plan_dimension(&model, scope));
                dims.extend(limit_dims.iter().cloned());
            }
            for privilege in PRIVILEGES {
                let privilege = Some(privilege).filter(|p| *p != "none");
                for role in &roles {
                    for access in &analytics {
                        for combo in product(&dims) {
                            let auth = input::auth(privilege, ctx, *role, *access);
                            let mut doc = json!({"scope": scope, "auth": auth});
                            match model.shape {
                                Shape::Absent => {}
                                Shape::Null => doc["resource"] = Value::Null,
                                Shape::Object if !has_resource => doc["resource"] = Value::Null,
                                Shape::Object => {
                                    let mut res = input::base_resource(&table.package);
                                    for v in &combo {
                                        apply(&table.package, &model, &mut res, &v.apply)?;
                                    }
                                    doc["resource"] = res;
                                }
                            }
                            if let Some(settings) = &model.settings {
                                doc["settings"] = settings.clone();
                            }
                            if !inputs.insert(doc.to_string()) {
                                continue;
                            }
                            let allowed = oracle::allowed(table, &doc);
                            let mut parts = vec![sanitize(scope), ctx.token().to_string()];
                            parts.push(privilege.unwrap_or("none").to_string());
                            if ctx == Ctx::Org {
                                parts.push(role.unwrap_or("nonmember").to_string());
                            }
                            parts.extend(combo.iter().map(|v| v.token.clone()));
                            if let Some(a) = access {
                                parts.push(if *a { "access" } else { "noaccess" }.into());
                            }
                            parts.push(if allowed { "allowed" } else { "denied" }.into());
                            parts.retain(|p| !p.is_empty());
                            let name = format!("test_{}", parts.join("_"));
                            if !names.insert(name.clone()) {
                                bail!("{}: duplicate test name {name}", table.package);
                            }
                            out.push(Case {
                                scope: scope.to_string(),
                                name,
                                input: doc,
                                allowed,
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

fn apply(package: &str, model: &Model, res: &mut Value, edit: &Edit) -> Result<()> {
    match edit {
        Edit::Nothing => {}
        Edit::Relation(rel) => input::set_relation(package, res, rel)?,
        Edit::Orgs(org) => input::set_orgs(model, res, *org),
        Edit::Set(path, value) => {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            input::set_path(res, &path, value.clone());
        }
    }
    Ok(())
}

/// No relation, then every relation the table names.
fn relation_dimension(table: &Table) -> Vec<Variant> {
    let mut out = vec![Variant::new("norel", Edit::Nothing)];
    for rel in table.relations() {
        out.push(Variant::new(sanitize(&rel), Edit::Relation(rel)));
    }
    out
}

/// The resource's organization: in an organization, the request's or
/// another; in the sandbox, none or some.
fn org_dimension(model: &Model, ctx: Ctx) -> Vec<Variant> {
    if model.org_paths.is_empty() {
        return vec![Variant::new("", Edit::Nothing)];
    }
    match ctx {
        Ctx::Org => vec![
            Variant::new("sameorg", Edit::Orgs(Some(ORG_ID))),
            Variant::new("otherorg", Edit::Orgs(Some(OTHER_ORG_ID))),
        ],
        _ => vec![
            Variant::new("noorg", Edit::Orgs(None)),
            Variant::new("inorg", Edit::Orgs(Some(OTHER_ORG_ID))),
        ],
    }
}

/// `resource.user.num_resources` below, at and above the free-plan limit for
/// scopes that create a resource; below it for the others.
fn plan_dimension(model: &Model, scope: &str) -> Vec<Variant> {
    let Some(limit) = model.free_plan_limit else {
        return vec![Variant::new("", Edit::Nothing)];
    };
    let path = vec!["user".to_string(), "num_resources".to_string()];
    let set = |n: i64| Edit::Set(path.clone(), json!(n));
    if scope.starts_with("create") || scope == "import:backup" {
        vec![
            Variant::new("below", set(limit - 1)),
            Variant::new("at", set(limit)),
            Variant::new("above", set(limit + 1)),
        ]
    } else {
        vec![Variant::new("", set(limit - 1))]
    }
}

/// Per resource path a Limit reads: the values the Limits name, plus one
/// they do not (a role none of them names), in a fixed order.
fn limit_dimensions(table: &Table) -> Vec<Vec<Variant>> {
    let mut paths: Vec<Vec<String>> = Vec::new();
    for limit in table.limits() {
        if !paths.contains(&limit.path) {
            paths.push(limit.path.clone());
        }
    }
    paths
        .into_iter()
        .map(|path| {
            let mut values: Vec<Option<String>> = table
                .limits()
                .iter()
                .filter(|l| l.path == path)
                .flat_map(|l| l.values.iter().cloned())
                .collect();
            let unnamed = ["worker", "supervisor", "maintainer", "owner"]
                .into_iter()
                .find(|r| !values.contains(&Some(r.to_string())));
            values.extend(unnamed.map(|r| Some(r.to_string())));
            let order = |v: &Option<String>| match v.as_deref() {
                None => 0,
                Some(s) => 1 + ORG_ROLES.iter().position(|r| *r == s).unwrap_or(9),
            };
            values.sort_by_key(|v| (order(v), v.clone()));
            values.dedup();
            values
                .into_iter()
                .map(|v| {
                    let token = format!(
                        "{}_{}",
                        path.join("_"),
                        sanitize(v.as_deref().unwrap_or("null"))
                    );
                    Variant::new(token, Edit::Set(path.clone(), json!(v)))
                })
                .collect()
        })
        .collect()
}

/// Every combination of one variant per dimension, the last varying fastest.
fn product(dims: &[Vec<Variant>]) -> Vec<Vec<Variant>> {
    dims.iter().fold(vec![Vec::new()], |acc, dim| {
        acc.iter()
            .flat_map(|prefix| {
                dim.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push(v.clone());
                    next
                })
            })
            .collect()
    })
}

/// Lowercase `[a-z0-9_]`: `@` becomes `_at_`, anything else `_`.
pub fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for c in s.to_ascii_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' => out.push(c),
            '@' => out.push_str("_at_"),
            _ => out.push('_'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> Table {
        let path = format!("{}/policies/tables/{name}.csv", env!("CARGO_MANIFEST_DIR"));
        Table::parse(name, &std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn names_are_identifiers_and_every_dimension_is_covered() {
        let t = table("tasks");
        let cases = cases(&t).unwrap();
        assert!(cases.iter().all(|c| c
            .name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')));
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        for want in [
            "test_create_at_project_org_user_worker_project_owner_sameorg_at_allowed",
            "test_view_sandboxorg_admin_norel_inorg_denied",
            "test_view_org_none_nonmember_owner_sameorg_denied",
            "test_list_org_none_worker_allowed",
        ] {
            assert!(names.contains(&want), "{want}");
        }
        // Sandbox requests carry no org role: one case per privilege, not five.
        let list_sandbox = names
            .iter()
            .filter(|n| n.starts_with("test_list_sandbox_"))
            .count();
        assert_eq!(list_sandbox, 4);
        assert!(cases.iter().any(|c| c.allowed) && cases.iter().any(|c| !c.allowed));
    }

    #[test]
    fn sanitized_scopes() {
        assert_eq!(sanitize("create@project"), "create_at_project");
        assert_eq!(sanitize("update:Desc"), "update_desc");
    }
}
