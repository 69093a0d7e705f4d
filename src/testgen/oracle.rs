//! The expected verdict: `policies/README.md`'s reading of a table, applied
//! to an input document. Allowed when any row of the scope matches.

use serde_json::Value;

use super::table::{Row, RowContext, Table, ORG_ROLES, PRIVILEGES};

/// Whether `table` allows `input` (the `input` document, not `{"input": ...}`).
pub fn allowed(table: &Table, input: &Value) -> bool {
    let req = Request::read(input);
    if req.sandbox_with_org && carries_organization(req.resource) {
        return false;
    }
    table
        .rows
        .iter()
        .any(|row| row_matches(&table.package, row, &req))
}

struct Request<'a> {
    scope: &'a str,
    user: &'a Value,
    privilege: u8,
    /// `auth.organization` when not null.
    org: Option<&'a Value>,
    /// Org role priority, 4 when not a member.
    role: u8,
    sandbox_with_org: bool,
    resource: &'a Value,
}

impl<'a> Request<'a> {
    fn read(input: &'a Value) -> Request<'a> {
        let auth = &input["auth"];
        let user = &auth["user"];
        let privilege = user["privilege"]
            .as_str()
            .and_then(|p| PRIVILEGES.iter().position(|x| *x == p))
            .unwrap_or(3) as u8;
        let org = Some(&auth["organization"]).filter(|o| !o.is_null());
        let role = org
            .and_then(|o| o["user"]["role"].as_str())
            .and_then(|r| ORG_ROLES.iter().position(|x| *x == r))
            .unwrap_or(4) as u8;
        Request {
            scope: input["scope"].as_str().unwrap_or_default(),
            user,
            privilege,
            org,
            role,
            sandbox_with_org: org.is_none() && auth["organization_specified"] == Value::Bool(true),
            resource: &input["resource"],
        }
    }
}

/// `resource.organization`, or `resource.project.organization`, not null.
fn carries_organization(resource: &Value) -> bool {
    !resource["organization"].is_null() || !resource["project"]["organization"].is_null()
}

fn row_matches(package: &str, row: &Row, req: &Request) -> bool {
    if row.scope != req.scope {
        return false;
    }
    let context_ok = match row.context {
        RowContext::Sandbox => req.org.is_none(),
        RowContext::Organization => req.org.is_some(),
        RowContext::Any => true,
    };
    let privilege_ok = if row.strict_privilege {
        req.privilege == row.privilege
    } else {
        req.privilege <= row.privilege
    };
    let membership_ok = match (req.org, row.membership) {
        (Some(_), Some(least)) => req.role <= least,
        _ => true,
    };
    let analytics_ok = row
        .analytics_access
        .is_none_or(|want| req.user["has_analytics_access"] == Value::Bool(want));
    let ownership_ok = row.ownership.any
        || row
            .ownership
            .relations
            .iter()
            .any(|rel| has_relation(package, rel, req));
    let limit_ok = row.limit.as_ref().is_none_or(|l| l.holds(req.resource));
    context_ok
        && privilege_ok
        && membership_ok
        && analytics_ok
        && ownership_ok
        && limit_ok
        && in_request_org(row, req)
}

/// A row with Context Organization, in an organization, over a resource that
/// has an organization: the resource must be in the request's organization.
fn in_request_org(row: &Row, req: &Request) -> bool {
    match (row.context, req.org) {
        (RowContext::Organization, Some(org)) if req.resource.get("organization").is_some() => {
            let id = &req.resource["organization"]["id"];
            !id.is_null() && *id == org["id"]
        }
        _ => true,
    }
}

/// Whether the user has relation `rel` to the resource.
fn has_relation(package: &str, rel: &str, req_input: &Request) -> bool {
    let resource = req_input.resource;
    let uid = &req_input.user["id"];
    if package == "organizations" {
        let role = &resource["user"]["role"];
        return match rel {
            "owner" => id_is(&resource["owner"]["id"], uid) || role == "owner",
            _ => role == rel,
        };
    }
    match relation_path(package, rel) {
        Some(path) => id_is(lookup(resource, &path), uid),
        None => false,
    }
}

fn id_is(id: &Value, uid: &Value) -> bool {
    !uid.is_null() && id == uid
}

/// The README's path of the id that makes the relation hold.
pub fn relation_path(package: &str, rel: &str) -> Option<Vec<&'static str>> {
    let path: &[&str] = match rel {
        "owner" => &["owner", "id"],
        "assignee" => &["assignee", "id"],
        "invitee" => &["invitee", "id"],
        "self" if package == "users" => &["id"],
        "self" => &["user", "id"],
        "project:owner" => &["project", "owner", "id"],
        "project:assignee" => &["project", "assignee", "id"],
        "task:owner" => &["task", "owner", "id"],
        "task:assignee" => &["task", "assignee", "id"],
        "job:assignee" => &["job", "assignee", "id"],
        "issue:owner" => &["issue", "owner", "id"],
        "issue:assignee" => &["issue", "assignee", "id"],
        "target:owner" => &["target", "owner", "id"],
        "target:assignee" => &["target", "assignee", "id"],
        _ => return None,
    };
    Some(path.to_vec())
}

pub fn lookup<'v>(v: &'v Value, path: &[&str]) -> &'v Value {
    path.iter()
        .fold(v, |v, key| v.get(key).unwrap_or(&Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(name: &str) -> Table {
        let path = format!("{}/policies/tables/{name}.csv", env!("CARGO_MANIFEST_DIR"));
        Table::parse(name, &std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn org(role: Option<&str>) -> Value {
        json!({"id": 7, "owner": {"id": 9}, "user": {"role": role}})
    }

    fn input(scope: &str, privilege: Option<&str>, org: Value, resource: Value) -> Value {
        let specified = !org.is_null();
        json!({"scope": scope, "auth": {"user": {"id": 1, "privilege": privilege},
            "organization": org, "organization_specified": specified}, "resource": resource})
    }

    #[test]
    fn strict_privilege_rows_need_the_exact_privilege() {
        let jobs = table("jobs");
        let job = json!({"assignee": {"id": 1}, "organization": {"id": 7}});
        let view = |p| input("view", p, org(None), job.clone());
        assert!(allowed(&jobs, &view(Some("worker"))));
        assert!(!allowed(&jobs, &view(Some("user"))));
        assert!(!allowed(&jobs, &view(None)));
        let other_org = json!({"assignee": {"id": 1}, "organization": {"id": 8}});
        assert!(!allowed(
            &jobs,
            &input("view", Some("worker"), org(None), other_org)
        ));
    }

    #[test]
    fn membership_privilege_and_the_organization_check() {
        let tasks = table("tasks");
        let task = |o: i64| json!({"owner": {"id": 2}, "organization": {"id": o}, "project": null});
        let view = |p, role, o| input("view", p, org(role), task(o));
        assert!(allowed(&tasks, &view(Some("user"), Some("maintainer"), 7)));
        assert!(!allowed(&tasks, &view(Some("user"), Some("maintainer"), 8)));
        assert!(!allowed(&tasks, &view(Some("user"), Some("supervisor"), 7)));
        assert!(!allowed(&tasks, &view(Some("worker"), Some("owner"), 7)));
        // Admin rows of this table are Sandbox rows.
        assert!(!allowed(&tasks, &view(Some("admin"), None, 7)));
        let sandbox = input("view", Some("admin"), Value::Null, task(8));
        assert!(allowed(&tasks, &sandbox));
    }

    #[test]
    fn sandbox_with_an_organization_specified_needs_resources_without_one() {
        let tasks = table("tasks");
        let mut doc = input(
            "view",
            Some("admin"),
            Value::Null,
            json!({"organization": null,
            "project": {"organization": {"id": 7}}}),
        );
        assert!(allowed(&tasks, &doc));
        doc["auth"]["organization_specified"] = json!(true);
        assert!(!allowed(&tasks, &doc));
        doc["resource"]["project"]["organization"] = Value::Null;
        assert!(allowed(&tasks, &doc));
    }

    #[test]
    fn context_free_rows_skip_the_organization_check() {
        let invitations = table("invitations");
        let inv = json!({"owner": {"id": 3}, "invitee": {"id": 1}, "organization": {"id": 8}, "role": "worker"});
        assert!(allowed(&invitations, &input("view", None, org(None), inv)));
    }

    #[test]
    fn limits_and_organization_roles() {
        let memberships = table("memberships");
        let m = |role| json!({"user": {"id": 5}, "organization": {"id": 7}, "role": role});
        let change = |my, theirs| input("change:role", Some("user"), org(Some(my)), m(theirs));
        assert!(allowed(&memberships, &change("maintainer", "worker")));
        assert!(!allowed(&memberships, &change("maintainer", "maintainer")));
        assert!(allowed(&memberships, &change("owner", "maintainer")));
        assert!(!allowed(&memberships, &change("owner", "owner")));

        let orgs = table("organizations");
        let o = |owner, role| json!({"owner": {"id": owner}, "user": {"role": role}});
        assert!(allowed(
            &orgs,
            &input("delete", Some("worker"), Value::Null, o(1, "owner"))
        ));
        assert!(allowed(
            &orgs,
            &input("delete", Some("worker"), Value::Null, o(2, "owner"))
        ));
        assert!(!allowed(
            &orgs,
            &input("delete", Some("worker"), Value::Null, o(2, "maintainer"))
        ));
        assert!(allowed(
            &orgs,
            &input("update", Some("worker"), Value::Null, o(2, "maintainer"))
        ));
    }

    #[test]
    fn analytics_access() {
        let analytics = table("analytics");
        let mut doc = input("view", None, Value::Null, Value::Null);
        assert!(!allowed(&analytics, &doc));
        doc["auth"]["user"]["has_analytics_access"] = json!(true);
        assert!(allowed(&analytics, &doc));
    }
}
