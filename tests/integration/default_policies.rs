//! The default policy set (`policies/`): the generated tests are up to date
//! with the tables, and every list filter selects exactly the rows whose
//! `view` the same user is allowed (`policies/README.md`, "Filters").

use std::path::{Path, PathBuf};

use regent::testgen::input::{self, Ctx, ORG_ID, OTHER_ORG_ID, USER_ID};
use regent::testgen::table::Table;
use serde_json::{json, Value};

use crate::support::{Conn, TestServer};

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

#[test]
fn generated_tests_match_the_tables() {
    let dir = policies_dir();
    let files = regent::testgen::generate(&dir.join("tables")).unwrap();
    let mut stale: Vec<String> = files
        .iter()
        .filter(|(name, text)| {
            std::fs::read_to_string(dir.join("tests").join(name))
                .ok()
                .as_ref()
                != Some(text)
        })
        .map(|(name, _)| name.clone())
        .collect();
    let extra = regent::testgen::stale_files(&dir.join("tests"), &files).unwrap();
    stale.extend(extra.iter().map(|n| format!("{n} (no longer generated)")));
    assert!(
        stale.is_empty(),
        "policies/tests is out of date with policies/tables ({}): run `cargo run -- gen-tests`",
        stale.join(", ")
    );
}

/// How a filter field reads a resource's input document.
enum Field {
    /// An equality on the value at this path (`a.b.id`; null on the way is null).
    Path(&'static [&'static str]),
    /// A to-many relation (`members__...`): the rows, each an object of the
    /// fields after the prefix. One filter object's fields under the prefix
    /// must hold on one row, as in Django's `filter()`.
    Many(Rows),
}

/// A to-many relation's rows for (resource, auth).
type Rows = fn(&Value, &Value) -> Vec<Value>;

struct Package {
    name: &'static str,
    fields: &'static [(&'static str, Field)],
    /// Organizations the resources are in (None: no organization).
    orgs: &'static [Option<i64>],
    /// Contexts left out, with the reason in the table below.
    skip: &'static [Ctx],
}

const ANY_ORG: &[Option<i64>] = &[None, Some(ORG_ID), Some(OTHER_ORG_ID)];
const SOME_ORG: &[Option<i64>] = &[Some(ORG_ID), Some(OTHER_ORG_ID)];
const NO_ORG: &[Option<i64>] = &[None];

use Field::{Many, Path as P};

/// The packages with a `list` scope and filter fields, and how each filter
/// field reads the resource's input. Not here: `events` (its table has no
/// `list` or `view` scope to compare a filter with).
#[rustfmt::skip]
const PACKAGES: &[Package] = &[
    Package { name: "tasks", orgs: ANY_ORG, skip: &[], fields: &[
        ("owner_id", P(&["owner", "id"])),
        ("assignee_id", P(&["assignee", "id"])),
        ("organization", P(&["organization", "id"])),
        ("project__owner_id", P(&["project", "owner", "id"])),
        ("project__assignee_id", P(&["project", "assignee", "id"])),
        ("project__organization", P(&["project", "organization", "id"])),
    ] },
    Package { name: "projects", orgs: ANY_ORG, skip: &[], fields: &[
        ("owner_id", P(&["owner", "id"])),
        ("assignee_id", P(&["assignee", "id"])),
        ("organization", P(&["organization", "id"])),
    ] },
    Package { name: "jobs", orgs: ANY_ORG, skip: &[], fields: &[
        ("assignee_id", P(&["assignee", "id"])),
        ("segment__task__owner_id", P(&["task", "owner", "id"])),
        ("segment__task__assignee_id", P(&["task", "assignee", "id"])),
        ("segment__task__organization", P(&["organization", "id"])),
        ("segment__task__project__owner_id", P(&["project", "owner", "id"])),
        ("segment__task__project__assignee_id", P(&["project", "assignee", "id"])),
    ] },
    Package { name: "issues", orgs: ANY_ORG, skip: &[], fields: &[
        ("owner", P(&["owner", "id"])),
        ("assignee", P(&["assignee", "id"])),
        ("job__assignee", P(&["job", "assignee", "id"])),
        ("job__segment__task__owner", P(&["task", "owner", "id"])),
        ("job__segment__task__assignee", P(&["task", "assignee", "id"])),
        ("job__segment__task__organization", P(&["organization", "id"])),
        ("job__segment__task__project__owner", P(&["project", "owner", "id"])),
        ("job__segment__task__project__assignee", P(&["project", "assignee", "id"])),
    ] },
    Package { name: "comments", orgs: ANY_ORG, skip: &[], fields: &[
        ("owner", P(&["owner", "id"])),
        ("issue__owner", P(&["issue", "owner", "id"])),
        ("issue__assignee", P(&["issue", "assignee", "id"])),
        ("issue__job__assignee", P(&["job", "assignee", "id"])),
        ("issue__job__segment__task__owner", P(&["task", "owner", "id"])),
        ("issue__job__segment__task__assignee", P(&["task", "assignee", "id"])),
        ("issue__job__segment__task__organization", P(&["organization", "id"])),
        ("issue__job__segment__task__project__owner", P(&["project", "owner", "id"])),
        ("issue__job__segment__task__project__assignee", P(&["project", "assignee", "id"])),
    ] },
    Package { name: "cloudstorages", orgs: ANY_ORG, skip: &[], fields: &[
        ("owner", P(&["owner", "id"])),
        ("organization", P(&["organization", "id"])),
    ] },
    Package { name: "webhooks", orgs: ANY_ORG, skip: &[], fields: &[
        ("owner_id", P(&["owner", "id"])),
        ("organization", P(&["organization", "id"])),
        ("project__owner_id", P(&["project", "owner", "id"])),
    ] },
    // Invitations and memberships always belong to an organization.
    Package { name: "invitations", orgs: SOME_ORG, skip: &[], fields: &[
        ("owner", P(&["owner", "id"])),
        ("membership__user", P(&["invitee", "id"])),
        ("membership__organization", P(&["organization", "id"])),
    ] },
    Package { name: "memberships", orgs: SOME_ORG, skip: &[], fields: &[
        ("user", P(&["user", "id"])),
        ("organization", P(&["organization", "id"])),
        ("is_active", P(&["is_active"])),
    ] },
    Package { name: "organizations", orgs: NO_ORG, skip: &[], fields: &[
        ("owner_id", P(&["owner", "id"])),
        ("members__", Many(organization_members)),
    ] },
    // Users in the sandbox with an organization specified: the filter's
    // `memberships__organization: null` means "member of no organization",
    // which the view input (only the membership in the request's
    // organization) cannot tell.
    Package { name: "users", orgs: NO_ORG, skip: &[Ctx::SandboxWithOrg], fields: &[
        ("id", P(&["id"])),
        ("memberships__", Many(user_memberships)),
    ] },
];

/// An organization's members: its owner, and the user when `resource.user.role` says so.
fn organization_members(resource: &Value, _auth: &Value) -> Vec<Value> {
    let owner = &resource["owner"]["id"];
    let mut rows = vec![json!({"user_id": owner, "is_active": true})];
    if !resource["user"]["role"].is_null() && *owner != json!(USER_ID) {
        rows.push(json!({"user_id": USER_ID, "is_active": true}));
    }
    rows
}

/// A user's memberships, as far as the input tells: the one in the request's organization.
fn user_memberships(resource: &Value, auth: &Value) -> Vec<Value> {
    match (&auth["organization"]["id"], &resource["membership"]["role"]) {
        (Value::Null, _) | (_, Value::Null) => Vec::new(),
        (org, _) => vec![json!({"organization": org})],
    }
}

/// Every user: privilege x context x org role.
fn users() -> Vec<(String, Ctx, Value)> {
    let mut out = Vec::new();
    for privilege in ["admin", "user", "worker", "none"] {
        let p = Some(privilege).filter(|p| *p != "none");
        for ctx in Ctx::ALL {
            let roles: &[Option<&str>] = match ctx {
                Ctx::Org => &[
                    Some("owner"),
                    Some("maintainer"),
                    Some("supervisor"),
                    Some("worker"),
                    None,
                ],
                _ => &[None],
            };
            for role in roles {
                let name = match (ctx, role) {
                    (Ctx::Org, Some(r)) => format!("{privilege} in org as {r}"),
                    (Ctx::Org, None) => format!("{privilege} in org as non-member"),
                    _ => format!("{privilege} in {}", ctx.token()),
                };
                out.push((name, ctx, input::auth(p, ctx, *role, None)));
            }
        }
    }
    out
}

/// Every resource the user may relate to: each relation of the table (and
/// none) x each organization, made consistent with the user where the
/// relation says who the user is.
fn resources(pkg: &Package, table: &Table, auth: &Value) -> Vec<(String, Value)> {
    let model = input::model(pkg.name).unwrap();
    let my_role = &auth["organization"]["user"]["role"];
    let mut out = Vec::new();
    for rel in std::iter::once("none".to_string()).chain(table.relations()) {
        for org in pkg.orgs {
            let mut res = input::base_resource(pkg.name);
            if rel != "none" {
                input::set_relation(pkg.name, &mut res, &rel).unwrap();
            }
            input::set_orgs(&model, &mut res, *org);
            let mine = rel == "self";
            let in_my_org = org.is_some() && *org == auth["organization"]["id"].as_i64();
            match pkg.name {
                // My own membership in the request's organization has my role.
                "memberships" if mine && in_my_org => {
                    if my_role.is_null() {
                        continue;
                    }
                    res["role"] = my_role.clone();
                }
                // A user's membership is the one in the request's organization.
                "users" if auth["organization"].is_null() => {
                    res["membership"] = json!({"role": null})
                }
                "users" if mine => res["membership"] = json!({"role": my_role}),
                "users" => {
                    for role in [Value::Null, json!("worker")] {
                        let mut r = res.clone();
                        r["membership"] = json!({"role": role});
                        out.push((format!("{rel}, member as {role}"), r));
                    }
                    continue;
                }
                _ => {}
            }
            out.push((
                format!(
                    "{rel}, org {}",
                    org.map_or("null".into(), |o| o.to_string())
                ),
                res,
            ));
        }
    }
    out
}

fn values_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn lookup<'v>(v: &'v Value, path: &[&str]) -> &'v Value {
    path.iter().fold(v, |v, k| v.get(k).unwrap_or(&Value::Null))
}

/// Whether `filter` (prefix form) selects `resource`.
fn selects(pkg: &Package, filter: &Value, resource: &Value, auth: &Value) -> Result<bool, String> {
    match filter {
        Value::String(s) if s == "org_filter_proof" => Ok(true),
        Value::Object(obj) => {
            let mut ok = true;
            let mut many: Vec<(&str, &Value, Rows)> = Vec::new();
            for (key, want) in obj {
                let field = pkg.fields.iter().find(|(name, f)| match f {
                    P(_) => *name == key.as_str(),
                    Many(_) => key.starts_with(*name),
                });
                match field {
                    Some((_, P(path))) => ok &= values_eq(lookup(resource, path), want),
                    Some((prefix, Many(rows))) => many.push((&key[prefix.len()..], want, *rows)),
                    None => return Err(format!("unknown {} filter field {key:?}", pkg.name)),
                }
            }
            if let Some((_, _, rows)) = many.first() {
                let rows = rows(resource, auth);
                let all_null = many.iter().all(|(_, want, _)| want.is_null());
                ok &= (all_null && rows.is_empty())
                    || rows.iter().any(|row| {
                        many.iter()
                            .all(|(sub, want, _)| values_eq(&row[*sub], want))
                    });
            }
            Ok(ok)
        }
        Value::Array(items) => {
            let args = items.get(1..).unwrap_or_default();
            let mut results = Vec::new();
            for arg in args {
                results.push(selects(pkg, arg, resource, auth)?);
            }
            match (items.first().and_then(Value::as_str), results.as_slice()) {
                (Some("&"), r) => Ok(r.iter().all(|b| *b)),
                (Some("|"), r) => Ok(r.iter().any(|b| *b)),
                (Some("~"), [b]) => Ok(!b),
                _ => Err(format!("not a filter: {filter}")),
            }
        }
        _ => Err(format!("not a filter: {filter}")),
    }
}

/// The filter is `"org_filter_proof"` or an AND with the proof among its terms.
fn has_proof(filter: &Value) -> bool {
    match filter {
        Value::String(s) => s == "org_filter_proof",
        Value::Array(items) => {
            items.first() == Some(&json!("&")) && items[1..].iter().any(has_proof)
        }
        _ => false,
    }
}

async fn ask(conn: &mut Conn, path: &str, input: &Value) -> Option<Value> {
    let body = json!({ "input": input }).to_string();
    let r = conn.send("POST", path, &[], body.into()).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json().get("result").cloned()
}

/// The policies of `policies/` without its tests and tables.
fn policy_paths() -> Vec<String> {
    let dir = policies_dir();
    let mut paths: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| match p.file_name().and_then(|n| n.to_str()) {
            Some("tests" | "tables") => false,
            Some(name) => p.is_dir() || (name.ends_with(".rego") && !name.ends_with("_test.rego")),
            None => false,
        })
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    paths.sort();
    paths
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_select_exactly_the_viewable_rows() {
    let server = TestServer::start_paths(policy_paths()).await;
    let mut conn = Conn::open(server.addr).await;
    let mut report = Vec::new();
    let mut checked = 0;
    for pkg in PACKAGES {
        let text = std::fs::read_to_string(policies_dir().join(format!("tables/{}.csv", pkg.name)))
            .unwrap();
        let table = Table::parse(pkg.name, &text).unwrap();
        let mut problems = Vec::new();
        for (who, ctx, auth) in users() {
            if pkg.skip.contains(&ctx) {
                continue;
            }
            let list = json!({"scope": "list", "auth": auth, "resource": null});
            let filter = match ask(&mut conn, &format!("/v1/data/{}/filter", pkg.name), &list).await
            {
                None => {
                    problems.push(format!("{who}: filter is undefined"));
                    continue;
                }
                Some(f) if !has_proof(&f) => {
                    problems.push(format!("{who}: filter {f} lacks \"org_filter_proof\""));
                    continue;
                }
                Some(f) => f,
            };
            for (what, resource) in resources(pkg, &table, &auth) {
                checked += 1;
                let view = json!({"scope": "view", "auth": auth, "resource": resource});
                let allowed = ask(&mut conn, &format!("/v1/data/{}/allow", pkg.name), &view).await;
                let selected = selects(pkg, &filter, &resource, &auth);
                let allowed = match allowed {
                    Some(Value::Bool(b)) => b,
                    other => {
                        problems.push(format!("{who}, {what}: view allow is {other:?}"));
                        continue;
                    }
                };
                match selected {
                    Err(e) => problems.push(format!("{who}: filter {filter}: {e}")),
                    Ok(s) if s != allowed => problems.push(format!(
                        "{who}, resource ({what}): view {}, filter {} it\n    filter: {filter}\n    resource: {resource}",
                        if allowed { "allowed" } else { "denied" },
                        if s { "selects" } else { "omits" },
                    )),
                    Ok(_) => {}
                }
            }
        }
        if !problems.is_empty() {
            let shown: Vec<&String> = problems.iter().take(5).collect();
            report.push(format!(
                "{}: {} mismatches, first:\n  {}",
                pkg.name,
                problems.len(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
    }
    server.stop().await.unwrap();
    assert!(checked > 1000, "only {checked} rows checked");
    assert!(
        report.is_empty(),
        "filters disagree with view:\n{}",
        report.join("\n")
    );
}
