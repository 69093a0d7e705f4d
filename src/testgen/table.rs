//! A decision table (`<package>.csv`) read into rows, with each column
//! parsed as `policies/README.md` reads it: context, privilege, membership,
//! ownership relations, Limit, Strict_Privilege, HasAnalyticsAccess.

use anyhow::{anyhow, bail, Context as _, Result};

use super::csv;
use super::limit::Limit;

/// A row's `Context` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowContext {
    Sandbox,
    Organization,
    Any,
}

/// A row's `Ownership` column: the relations it names (lowercased), and
/// whether it also names `None` / `N/A` (then no relation is required).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    pub any: bool,
    pub relations: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub line: usize,
    pub scope: String,
    pub context: RowContext,
    pub ownership: Ownership,
    pub limit: Option<Limit>,
    /// Privilege priority: admin 0, user 1, worker 2, none 3.
    pub privilege: u8,
    pub strict_privilege: bool,
    /// Org role priority: owner 0 .. worker 3; `None` for N/A.
    pub membership: Option<u8>,
    pub analytics_access: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub package: String,
    pub rows: Vec<Row>,
}

/// Global roles by priority (index = priority; `none` is privilege null).
pub const PRIVILEGES: [&str; 4] = ["admin", "user", "worker", "none"];
/// Org roles by priority (index = priority; not a member is 4).
pub const ORG_ROLES: [&str; 4] = ["owner", "maintainer", "supervisor", "worker"];

/// Ownership relations of the README, in a fixed order (for organizations,
/// `owner`, `maintainer`, `supervisor`, `worker` are the user's org role).
pub const RELATIONS: [&str; 16] = [
    "owner",
    "maintainer",
    "supervisor",
    "worker",
    "assignee",
    "self",
    "invitee",
    "project:owner",
    "project:assignee",
    "task:owner",
    "task:assignee",
    "job:assignee",
    "issue:owner",
    "issue:assignee",
    "target:owner",
    "target:assignee",
];

pub fn relation_rank(rel: &str) -> usize {
    RELATIONS
        .iter()
        .position(|r| *r == rel)
        .unwrap_or(RELATIONS.len())
}

impl Table {
    pub fn parse(package: &str, text: &str) -> Result<Table> {
        let records = csv::parse(text).with_context(|| format!("{package}.csv"))?;
        let Some((header, body)) = records.split_first() else {
            bail!("{package}.csv: empty table");
        };
        let col = |name: &str| header.fields.iter().position(|h| h.trim() == name);
        let need = |name: &str| col(name).ok_or_else(|| anyhow!("{package}.csv: no {name} column"));
        let (scope, context, ownership, privilege, membership) = (
            need("Scope")?,
            need("Context")?,
            need("Ownership")?,
            need("Privilege")?,
            need("Membership")?,
        );
        let (limit, strict, analytics) = (
            col("Limit"),
            col("Strict_Privilege"),
            col("HasAnalyticsAccess"),
        );
        let mut rows = Vec::new();
        for rec in body {
            let at = || format!("{package}.csv:{}", rec.line);
            if rec.fields.len() != header.fields.len() {
                bail!(
                    "{}: {} fields, the header has {}",
                    at(),
                    rec.fields.len(),
                    header.fields.len()
                );
            }
            let f = |i: usize| rec.fields[i].trim();
            let opt = |i: Option<usize>| i.map(f).filter(|s| !s.is_empty());
            let row = Row {
                line: rec.line,
                scope: f(scope).to_string(),
                context: parse_context(f(context)).with_context(at)?,
                ownership: parse_ownership(package, f(ownership)).with_context(at)?,
                limit: opt(limit).map(Limit::parse).transpose().with_context(at)?,
                privilege: parse_privilege(f(privilege)).with_context(at)?,
                strict_privilege: opt(strict).map(parse_bool).transpose().with_context(at)?
                    == Some(true),
                membership: parse_membership(f(membership)).with_context(at)?,
                analytics_access: opt(analytics)
                    .map(parse_bool)
                    .transpose()
                    .with_context(at)?,
            };
            if row.scope.is_empty() {
                bail!("{}: empty Scope", at());
            }
            rows.push(row);
        }
        Ok(Table {
            package: package.to_string(),
            rows,
        })
    }

    /// Scopes in order of first appearance.
    pub fn scopes(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for row in &self.rows {
            if !out.contains(&row.scope.as_str()) {
                out.push(&row.scope);
            }
        }
        out
    }

    /// Every relation some row names, in `RELATIONS` order.
    pub fn relations(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for row in &self.rows {
            for rel in &row.ownership.relations {
                if !out.contains(rel) {
                    out.push(rel.clone());
                }
            }
        }
        out.sort_by_key(|r| (relation_rank(r), r.clone()));
        out
    }

    /// The Limit conditions of the table.
    pub fn limits(&self) -> Vec<&Limit> {
        self.rows.iter().filter_map(|r| r.limit.as_ref()).collect()
    }

    pub fn has_analytics_column(&self) -> bool {
        self.rows.iter().any(|r| r.analytics_access.is_some())
    }
}

fn parse_context(s: &str) -> Result<RowContext> {
    match s.to_ascii_lowercase().as_str() {
        "sandbox" => Ok(RowContext::Sandbox),
        "organization" => Ok(RowContext::Organization),
        "n/a" => Ok(RowContext::Any),
        _ => bail!("unknown Context {s:?}"),
    }
}

fn parse_privilege(s: &str) -> Result<u8> {
    let lower = s.to_ascii_lowercase();
    match PRIVILEGES.iter().position(|p| *p == lower) {
        Some(i) => Ok(i as u8),
        None => bail!("unknown Privilege {s:?}"),
    }
}

fn parse_membership(s: &str) -> Result<Option<u8>> {
    let lower = s.to_ascii_lowercase();
    if lower == "n/a" {
        return Ok(None);
    }
    match ORG_ROLES.iter().position(|p| *p == lower) {
        Some(i) => Ok(Some(i as u8)),
        None => bail!("unknown Membership {s:?}"),
    }
}

fn parse_bool(s: &str) -> Result<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => bail!("not a boolean: {s:?}"),
    }
}

fn parse_ownership(package: &str, s: &str) -> Result<Ownership> {
    let mut own = Ownership {
        any: false,
        relations: Vec::new(),
    };
    for part in s.split(',') {
        let rel = part.trim().to_ascii_lowercase();
        if rel == "none" || rel == "n/a" {
            own.any = true;
        } else if relation_known(package, &rel) {
            own.relations.push(rel);
        } else {
            bail!("unknown Ownership relation {:?} for {package}", part.trim());
        }
    }
    Ok(own)
}

fn relation_known(package: &str, rel: &str) -> bool {
    match rel {
        "maintainer" | "supervisor" | "worker" => package == "organizations",
        "self" => package == "users" || package == "memberships",
        _ => RELATIONS.contains(&rel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_columns() {
        let text = "Scope,Context,Ownership,Limit,Privilege,Membership,Strict_Privilege\n\
            view,Organization,\"Assignee, Project:owner\",\"resource[\"\"role\"\"] != \"\"owner\"\"\",Worker,N/A,True\n\
            list,N/A,N/A,,None,Worker,\n";
        let t = Table::parse("jobs", text).unwrap();
        assert_eq!(t.rows.len(), 2);
        let r = &t.rows[0];
        assert_eq!(r.context, RowContext::Organization);
        assert!(!r.ownership.any);
        assert_eq!(r.ownership.relations, vec!["assignee", "project:owner"]);
        assert!(r.limit.is_some() && r.strict_privilege);
        assert_eq!((r.privilege, r.membership), (2, None));
        let r = &t.rows[1];
        assert!(r.ownership.any && r.ownership.relations.is_empty());
        assert_eq!(r.privilege, 3);
        assert_eq!((r.membership, r.strict_privilege), (Some(3), false));
        assert_eq!(t.relations(), vec!["assignee", "project:owner"]);
        assert_eq!(t.scopes(), vec!["view", "list"]);
    }

    #[test]
    fn a_none_in_the_list_means_no_relation_required() {
        let text =
            "Scope,Context,Ownership,Privilege,Membership\nx,Sandbox,\"None, Invitee\",Admin,N/A\n";
        let t = Table::parse("invitations", text).unwrap();
        assert!(t.rows[0].ownership.any);
        assert_eq!(t.relations(), vec!["invitee"]);
        assert!(Table::parse(
            "tasks",
            "Scope,Context,Ownership,Privilege,Membership\nx,Sandbox,Self,Admin,N/A\n"
        )
        .is_err());
    }
}
