//! Input documents. Per package: the shape of `resource` (the keys of the
//! contract appendix), where a relation, the organization, the free-plan
//! count and a Limit value are written into it. Plus the `auth` part.
//!
//! Ids: the user is 1, the organization's owner (when not the user) 2, every
//! other person in a resource its own id from 3; organizations 100 (the
//! request's) and 200 (another); resources 1000 and up.

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};

use super::oracle::relation_path;

pub const USER_ID: i64 = 1;
pub const ORG_OWNER_ID: i64 = 2;
pub const ORG_ID: i64 = 100;
pub const OTHER_ORG_ID: i64 = 200;

/// The request's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctx {
    Sandbox,
    /// Sandbox, with `organization_specified: true`.
    SandboxWithOrg,
    Org,
}

impl Ctx {
    pub const ALL: [Ctx; 3] = [Ctx::Sandbox, Ctx::SandboxWithOrg, Ctx::Org];

    pub fn token(self) -> &'static str {
        match self {
            Ctx::Sandbox => "sandbox",
            Ctx::SandboxWithOrg => "sandboxorg",
            Ctx::Org => "org",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// No `resource` key at all (server).
    Absent,
    /// `resource: null` for every scope.
    Null,
    /// An object, except for `list` (null).
    Object,
}

pub struct Model {
    pub shape: Shape,
    /// The organization objects the resource carries.
    pub org_paths: &'static [&'static [&'static str]],
    /// The free-plan limit on `resource.user.num_resources`, if it has one.
    pub free_plan_limit: Option<i64>,
    /// Top-level `settings`, if the package's input has them.
    pub settings: Option<Value>,
}

const ORG: &[&[&str]] = &[&["organization"]];
const TASK_ORGS: &[&[&str]] = &[&["organization"], &["project", "organization"]];

pub fn model(package: &str) -> Result<Model> {
    let m = |shape, org_paths, free_plan_limit| Model {
        shape,
        org_paths,
        free_plan_limit,
        settings: None,
    };
    Ok(match package {
        "server" => m(Shape::Absent, &[], None),
        "analytics" | "events" | "lambda" => m(Shape::Null, &[], None),
        "annotationguides" | "comments" | "invitations" | "issues" | "jobs" | "memberships"
        | "webhooks" => m(Shape::Object, ORG, None),
        "cloudstorages" => m(Shape::Object, ORG, Some(10)),
        "projects" => m(Shape::Object, ORG, Some(3)),
        "tasks" => m(Shape::Object, TASK_ORGS, Some(10)),
        "users" => m(Shape::Object, &[], None),
        "organizations" => Model {
            settings: Some(json!({"organizations_min_role_to_create": "user"})),
            ..m(Shape::Object, &[], Some(1))
        },
        _ => bail!("no input model for package {package:?}"),
    })
}

/// The resource with nobody related to the user and no organization.
pub fn base_resource(package: &str) -> Value {
    let person = |id: i64| json!({"id": id});
    let project = json!({"id": 1001, "owner": person(5), "assignee": person(6)});
    let task = json!({"id": 1002, "owner": person(7), "assignee": person(8)});
    let job = json!({"id": 1003, "assignee": person(9)});
    let issue = json!({"id": 1004, "owner": person(11), "assignee": person(12)});
    let null = Value::Null;
    match package {
        "annotationguides" => json!({"id": 1000, "organization": null,
            "target": {"owner": person(14), "assignee": person(15), "is_job_staff": false}}),
        "cloudstorages" => json!({"id": 1000, "owner": person(3), "organization": null,
            "user": {}}),
        "projects" => json!({"id": 1000, "owner": person(3), "assignee": person(4),
            "organization": null, "user": {}}),
        "comments" => json!({"id": 1000, "owner": person(3), "assignee": person(4),
            "issue": issue, "job": job, "task": task, "project": project, "organization": null}),
        "invitations" => json!({"owner": person(3), "invitee": person(13),
            "organization": null, "role": "worker"}),
        "issues" => json!({"id": 1000, "owner": person(3), "assignee": person(4),
            "job": job, "task": task, "project": project, "organization": null}),
        "jobs" => json!({"id": 1000, "assignee": person(4), "task": task, "project": project,
            "organization": null}),
        "memberships" => json!({"user": person(16), "organization": null, "role": "worker",
            "is_active": true}),
        "organizations" => json!({"owner": person(3), "user": {"role": null}}),
        "tasks" => json!({"id": 1000, "owner": person(3), "assignee": person(4),
            "organization": null, "user": {},
            "project": {"owner": person(5), "assignee": person(6), "organization": null}}),
        "users" => json!({"id": 17, "membership": {"role": "worker"}}),
        "webhooks" => json!({"id": 1000, "owner": person(3), "organization": null,
            "project": {"owner": person(5)}}),
        _ => null,
    }
}

/// Makes the user hold `rel` to the resource.
pub fn set_relation(package: &str, resource: &mut Value, rel: &str) -> Result<()> {
    let uid = json!(USER_ID);
    if package == "organizations" {
        if rel == "owner" {
            set_path(resource, &["owner", "id"], uid);
        }
        set_path(resource, &["user", "role"], json!(rel));
        return Ok(());
    }
    let Some(path) = relation_path(package, rel) else {
        bail!("{package}: no path for relation {rel:?}");
    };
    set_path(resource, &path, uid);
    if package == "annotationguides" && rel == "job:assignee" {
        // The contract's key for "assigned to a job of the target".
        set_path(resource, &["target", "is_job_staff"], json!(true));
    }
    Ok(())
}

/// Sets every organization object of the resource to `{"id": org}` or null.
pub fn set_orgs(model: &Model, resource: &mut Value, org: Option<i64>) {
    for path in model.org_paths {
        set_path(
            resource,
            path,
            org.map_or(Value::Null, |id| json!({"id": id})),
        );
    }
}

/// Writes `value` at `path`, creating objects on the way.
pub fn set_path(v: &mut Value, path: &[&str], value: Value) {
    match path.split_first() {
        None => *v = value,
        Some((key, rest)) => {
            if !v.is_object() {
                *v = Value::Object(Map::new());
            }
            if let Value::Object(obj) = v {
                set_path(
                    obj.entry(key.to_string()).or_insert(Value::Null),
                    rest,
                    value,
                );
            }
        }
    }
}

/// The `auth` document. `role` is the org role in `Ctx::Org` (None: not a member).
pub fn auth(
    privilege: Option<&str>,
    ctx: Ctx,
    role: Option<&str>,
    analytics: Option<bool>,
) -> Value {
    let mut user = json!({"id": USER_ID, "privilege": privilege});
    if let Some(access) = analytics {
        set_path(&mut user, &["has_analytics_access"], json!(access));
    }
    let organization = match ctx {
        Ctx::Org => {
            let owner = if role == Some("owner") {
                USER_ID
            } else {
                ORG_OWNER_ID
            };
            json!({"id": ORG_ID, "owner": {"id": owner}, "user": {"role": role}})
        }
        _ => Value::Null,
    };
    json!({
        "user": user,
        "organization": organization,
        "organization_specified": ctx != Ctx::Sandbox,
    })
}
