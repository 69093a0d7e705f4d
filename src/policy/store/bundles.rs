//! The bundle side of the policy store: activating a bundle (its modules
//! and the data under its roots replace the previous version's; a delta
//! bundle's operations patch the data under its roots instead), the
//! disjoint-roots rule across bundles, and refusing API writes under a
//! bundle's roots, as OPA does.

use std::collections::{BTreeMap, HashSet};
use std::sync::PoisonError;
use std::time::SystemTime;

use anyhow::anyhow;

use super::{describe, PolicyStore, WriteError};
use crate::bundle::status::StatusError;
use crate::bundle::{roots_overlap, Bundle};
use crate::policy::data_write::DataWriteError;
use crate::policy::Sources;

impl PolicyStore {
    /// Activates `bundle` (replacing an earlier version of the same name):
    /// its modules replace the old ones, its data replaces everything under
    /// its roots. Refused when its roots overlap another active bundle's.
    pub fn activate_bundle(&self, bundle: Bundle, revision: String) -> Result<(), WriteError> {
        self.activate_bundles(vec![(bundle, revision)])
    }

    /// Activates several bundles in one snapshot, all or none, as OPA
    /// activates the bundles it loads together (a `--watch` reload of `-b`
    /// paths): one compile, and no request sees some of them new and others
    /// old. Each bundle's status records the outcome; when one bundle's
    /// modules do not compile, the compile errors go to that bundle's status
    /// and the others say which bundle kept them out.
    pub fn activate_bundles(&self, list: Vec<(Bundle, String)>) -> Result<(), WriteError> {
        if list.is_empty() {
            return Ok(());
        }
        for (bundle, _) in &list {
            self.statuses
                .update(&bundle.name, |s| s.bundle_type = Some(bundle.kind()));
        }
        let result = self.activate_bundles_inner(&list);
        let culprit = match &result {
            Err(WriteError::Build(err)) => crate::policy::Diagnostic::from_regorus(err)
                .location
                .and_then(|at| {
                    list.iter()
                        .find(|(b, _)| b.modules.iter().any(|m| m.id == at.file))
                })
                .map(|(b, _)| b.name.clone()),
            _ => None,
        };
        for (bundle, revision) in list {
            match &culprit {
                Some(culprit) if *culprit != bundle.name => self.statuses.failed(
                    &bundle.name,
                    format!("not activated: bundle {culprit}, activated with it, does not compile"),
                    None,
                ),
                _ => self.record_activation(&bundle, revision, &result),
            }
        }
        result
    }

    fn record_activation(
        &self,
        bundle: &Bundle,
        revision: String,
        result: &Result<(), WriteError>,
    ) {
        match result {
            Ok(()) => self.statuses.update(&bundle.name, |s| {
                s.active_revision = Some(revision);
                s.last_successful_activation = Some(SystemTime::now());
                s.error = None;
            }),
            Err(WriteError::Build(err)) => {
                // As OPA: a generic message, the compile errors listed.
                let diagnostic = crate::policy::Diagnostic::from_regorus(err);
                let parses = bundle
                    .modules
                    .iter()
                    .all(|m| crate::policy::parses(&m.id, &m.text));
                let code = if parses {
                    diagnostic.compile_code()
                } else {
                    "rego_parse_error"
                };
                self.statuses.update(&bundle.name, |s| {
                    s.error = Some(StatusError {
                        message: "error(s) occurred while compiling module(s)".into(),
                        http_code: None,
                        errors: vec![diagnostic.with_code(code)],
                    });
                });
            }
            Err(err) => self.statuses.failed(&bundle.name, describe(err), None),
        }
    }

    fn activate_bundles_inner(&self, list: &[(Bundle, String)]) -> Result<(), WriteError> {
        let mut bundles = self.bundles.lock().unwrap_or_else(PoisonError::into_inner);
        for i in 0..list.len() {
            if let Err(err) = check_roots(&bundles, list, i) {
                self.failed("bundle", &err);
                return Err(WriteError::Data(DataWriteError::Invalid(format!("{err}"))));
            }
        }
        let mut activated = Vec::with_capacity(list.len());
        self.write("bundle", |sources| {
            for (bundle, revision) in list {
                let previous = bundles.get(&bundle.name);
                let Some(patch) = &bundle.patch else {
                    apply_bundle(sources, previous, bundle, revision.clone())?;
                    activated.push(bundle.clone());
                    continue;
                };
                // As OPA: a delta patches the data under its roots and
                // leaves policies alone; its revision and metadata replace
                // the old ones.
                let mut data = under_roots(&sources.data, &bundle.roots());
                crate::bundle::delta::apply(&mut data, patch)
                    .map_err(|e| WriteError::Data(DataWriteError::Invalid(format!("{e:#}"))))?;
                let next = Bundle {
                    name: bundle.name.clone(),
                    manifest: bundle.manifest.clone(),
                    modules: previous.map(|p| p.modules.clone()).unwrap_or_default(),
                    data,
                    patch: None,
                    erases_policies: previous.is_some_and(|p| p.erases_policies),
                };
                apply_bundle(sources, previous, &next, revision.clone())?;
                activated.push(next);
            }
            Ok(())
        })?;
        for next in activated {
            bundles.insert(next.name.clone(), next);
        }
        Ok(())
    }

    /// The bundle owning `path` and the refusal message, if a bundle does.
    pub(super) fn owner_message(
        bundles: &BTreeMap<String, Bundle>,
        path: &[String],
    ) -> Option<String> {
        if path.is_empty() && !bundles.is_empty() {
            return Some("can't write to document root with bundle roots configured".into());
        }
        bundles.values().find_map(|bundle| {
            let root = bundle
                .roots()
                .into_iter()
                .find(|root| roots_overlap(root, path))?;
            Some(if root.is_empty() {
                format!("all paths owned by bundle {:?}", bundle.name)
            } else {
                format!(
                    "path {} is owned by bundle {:?}",
                    path.join("/"),
                    bundle.name
                )
            })
        })
    }

    /// As OPA: a policy write is refused when the new module's package, or
    /// the package of the module it replaces, lies under a bundle's roots.
    pub(super) fn check_policy_owner(
        &self,
        bundles: &BTreeMap<String, Bundle>,
        id: &str,
        text: Option<&str>,
    ) -> Result<(), WriteError> {
        let existing = self.snapshots.load().module(id).cloned();
        let texts = text
            .into_iter()
            .chain(existing.as_ref().map(|m| m.text.as_str()));
        for text in texts {
            if let Ok(package) = crate::policy::module_package(id, text) {
                if let Some(message) = Self::owner_message(bundles, &package) {
                    return Err(WriteError::Data(DataWriteError::Invalid(message)));
                }
            }
        }
        Ok(())
    }
}

/// The roots rules for `list[i]`: its roots may not overlap those of any
/// other bundle, active or activated with it; a delta keeps the roots of
/// the version it patches (as OPA, compared as sets).
fn check_roots(
    active: &BTreeMap<String, Bundle>,
    list: &[(Bundle, String)],
    i: usize,
) -> anyhow::Result<()> {
    let bundle = &list[i].0;
    let others = active
        .values()
        .filter(|other| !list.iter().any(|(b, _)| b.name == other.name))
        .chain(list.iter().map(|(b, _)| b))
        .filter(|other| other.name != bundle.name);
    let overlapping: Vec<&str> = others
        .filter(|other| {
            other
                .roots()
                .iter()
                .any(|a| bundle.roots().iter().any(|b| roots_overlap(a, b)))
        })
        .map(|other| other.name.as_str())
        .collect();
    if !overlapping.is_empty() {
        return Err(anyhow!(
            "bundle {}: detected overlapping roots in bundle manifest with: [{}]",
            bundle.name,
            overlapping.join(" ")
        ));
    }
    if let (Some(_), Some(previous)) = (&bundle.patch, active.get(&bundle.name)) {
        let sorted = |b: &Bundle| {
            let mut roots = b.roots();
            roots.sort();
            roots
        };
        if sorted(previous) != sorted(bundle) {
            return Err(anyhow!(
                "delta bundle '{}' has wasm resolvers or manifest roots that are different from those in the store",
                bundle.name
            ));
        }
    }
    Ok(())
}

/// Puts `bundle` into `sources`: the modules of `previous` (the same bundle's
/// last version) go, data under both versions' roots is replaced. If the
/// bundle erases policies, any other module whose package lies under its
/// roots goes too.
pub(super) fn apply_bundle(
    sources: &mut Sources,
    previous: Option<&Bundle>,
    bundle: &Bundle,
    revision: String,
) -> Result<(), WriteError> {
    let mut gone: HashSet<&str> = bundle.modules.iter().map(|m| m.id.as_str()).collect();
    let mut roots = bundle.roots();
    if let Some(previous) = previous {
        gone.extend(previous.modules.iter().map(|m| m.id.as_str()));
        roots.extend(previous.roots());
    }
    sources.modules.retain(|m| !gone.contains(m.id.as_str()));
    // As OPA's `erasePolicies`: any other module whose package lies under
    // the new roots (a file, an API write before the first download) goes.
    let new_roots = bundle.roots();
    sources.modules.retain(|m| {
        !bundle.erases_policies
            || crate::policy::module_package(&m.id, &m.text).map_or(true, |package| {
                !new_roots.iter().any(|root| package.starts_with(root))
            })
    });
    sources.modules.extend(bundle.modules.iter().cloned());
    for root in &roots {
        remove_under(&mut sources.data, root);
    }
    // Everything under the roots was removed, but a non-object value on the
    // way to a root (data `a = 1`, root `a/b`) still conflicts: an error.
    sources
        .merge_data(
            &format!("bundle {}", bundle.name),
            &[],
            serde_json::Value::Object(bundle.data.clone()),
        )
        .map_err(|e| {
            WriteError::Data(DataWriteError::Invalid(format!(
                "the bundle's data conflicts with the data outside its roots: {e:#}"
            )))
        })?;
    sources.revisions.insert(bundle.name.clone(), revision);
    Ok(())
}

/// The parts of `data` under `roots`, at their paths.
fn under_roots(
    data: &serde_json::Map<String, serde_json::Value>,
    roots: &[Vec<String>],
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for root in roots {
        let Some((last, parents)) = root.split_last() else {
            return data.clone();
        };
        let mut from = Some(data);
        for segment in parents {
            from = match from.and_then(|m| m.get(segment)) {
                Some(serde_json::Value::Object(inner)) => Some(inner),
                _ => None,
            };
        }
        let Some(value) = from.and_then(|m| m.get(last)) else {
            continue;
        };
        let mut to = &mut out;
        for segment in parents {
            let next = to
                .entry(segment.clone())
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if !next.is_object() {
                *next = serde_json::Value::Object(serde_json::Map::new());
            }
            let serde_json::Value::Object(next) = next else {
                unreachable!("made an object above")
            };
            to = next;
        }
        to.insert(last.clone(), value.clone());
    }
    out
}

fn remove_under(data: &mut serde_json::Map<String, serde_json::Value>, root: &[String]) {
    match root {
        [] => data.clear(),
        [last] => {
            data.remove(last);
        }
        [first, rest @ ..] => {
            if let Some(serde_json::Value::Object(inner)) = data.get_mut(first) {
                remove_under(inner, rest);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn under_roots_keeps_each_root_at_its_path() {
        let data = json!({
            "a": {"b": {"x": 1}, "c": 2, "d": {"y": 3}},
            "e": 4,
        });
        let data = data.as_object().unwrap();
        let roots = |rs: &[&str]| -> Vec<Vec<String>> {
            rs.iter().map(|r| crate::bundle::segments(r)).collect()
        };
        let got = under_roots(data, &roots(&["a/b", "a/d/y", "a/missing/z", "e"]));
        assert_eq!(
            serde_json::Value::Object(got),
            json!({"a": {"b": {"x": 1}, "d": {"y": 3}}, "e": 4})
        );
        assert_eq!(under_roots(data, &roots(&[""])), *data);
        assert!(under_roots(data, &roots(&["a/c/deeper"])).is_empty());
    }
}
