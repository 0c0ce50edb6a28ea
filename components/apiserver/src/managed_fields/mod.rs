//! Field management, as upstream's: every write records in
//! `metadata.managedFields` which manager set which fields, and server-side
//! apply (`application/apply-patch+yaml`) uses that record to merge a
//! configuration, remove what its manager stopped setting, and refuse with
//! 409 to change fields that another manager set, unless forced.

pub mod fieldset;
mod merge;
pub mod schema;

use serde_json::{json, Map, Value};

use crate::meta::{self, meta_mut};
use crate::status::{ApiError, ApiResult, Cause, Subject};
use fieldset::{applied_set, compare, display, field, FieldSet, Path};

pub const APPLY: &str = "Apply";
pub const UPDATE: &str = "Update";

/// Upstream keeps at most this many Update managers; older ones are folded
/// into one called `ancient-changes`.
const MAX_UPDATE_MANAGERS: usize = 10;

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    fn empty(w: &Writer, operation: &str) -> Entry {
        Entry {
            manager: w.manager.clone(),
            operation: operation.into(),
            api_version: w.api_version.clone(),
            time: None,
            subresource: w.subresource.clone(),
            fields: FieldSet::new(),
        }
    }

    /// Upstream tells managers apart by name, operation and subresource,
    /// and Update managers also by API version.
    fn is(&self, manager: &str, operation: &str, api_version: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource && (operation == APPLY || self.api_version == api_version)
    }

    /// The manager as conflict messages name it.
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == UPDATE {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_fields_v1(),
        });
        if let Some(t) = &self.time {
            v["time"] = json!(t);
        }
        if !self.subresource.is_empty() {
            v["subresource"] = json!(self.subresource);
        }
        v
    }

    fn from_json(v: &Value) -> Result<Entry, String> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let operation = s("operation");
        if operation != APPLY && operation != UPDATE {
            return Err(format!("operation must be Apply or Update, not {operation:?}"));
        }
        if v.get("fieldsType").and_then(Value::as_str).is_some_and(|t| t != "FieldsV1") {
            return Err("fieldsType must be FieldsV1".into());
        }
        let fields = match v.get("fieldsV1") {
            Some(f) => FieldSet::from_fields_v1(f)?,
            None => FieldSet::new(),
        };
        Ok(Entry {
            manager: s("manager"),
            operation,
            api_version: s("apiVersion"),
            time: v.get("time").and_then(Value::as_str).map(String::from),
            subresource: s("subresource"),
            fields,
        })
    }
}

/// Who writes, and through which endpoint.
#[derive(Debug, Clone)]
pub struct Writer {
    pub manager: String,
    pub api_version: String,
    /// `status`, `scale`, or "" for the resource itself.
    pub subresource: String,
    /// Whether the resource has a status that its main endpoint leaves alone.
    pub has_status: bool,
}

impl Writer {
    /// Fields nobody manages: what the server sets, and the part of the
    /// object this endpoint does not write (status through the main
    /// endpoint, spec through status).
    fn ignored(&self) -> (Vec<Path>, Vec<Path>) {
        let m = |f: &str| vec![field("metadata"), field(f)];
        let exact = vec![
            vec![field("apiVersion")],
            vec![field("kind")],
            vec![field("metadata")],
            m("name"),
            m("namespace"),
            m("creationTimestamp"),
            m("selfLink"),
            m("uid"),
            m("generation"),
            m("managedFields"),
            m("resourceVersion"),
            m("deletionTimestamp"),
            m("deletionGracePeriodSeconds"),
        ];
        let subtrees = match self.subresource.as_str() {
            "status" => vec![vec![field("spec")]],
            "" if self.has_status => vec![vec![field("status")]],
            _ => vec![],
        };
        (exact, subtrees)
    }

    fn filter(&self, set: &FieldSet) -> FieldSet {
        let (exact, subtrees) = self.ignored();
        set.without(&exact, &subtrees)
    }
}

/// The entries an object holds. Entries that cannot be read are an error
/// the caller reports (a client's) or drops (what is stored).
pub fn entries(obj: &Value) -> Result<Vec<Entry>, String> {
    match obj.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().enumerate().map(|(i, e)| Entry::from_json(e).map_err(|why| format!("[{i}]: {why}"))).collect(),
        Some(_) => Err("must be a list".into()),
    }
}

/// Writes the entries in upstream's order: Apply before Update, then
/// oldest first, then by manager.
fn store(obj: &mut Value, mut list: Vec<Entry>) {
    list.retain(|e| !e.fields.is_empty());
    cap_update_managers(&mut list);
    list.sort_by(|a, b| {
        (a.operation.as_str(), a.time.as_deref().unwrap_or(""), a.manager.as_str(), a.api_version.as_str(), a.subresource.as_str()).cmp(&(
            b.operation.as_str(),
            b.time.as_deref().unwrap_or(""),
            b.manager.as_str(),
            b.api_version.as_str(),
            b.subresource.as_str(),
        ))
    });
    let m = meta_mut(obj);
    if list.is_empty() {
        m.remove("managedFields");
    } else {
        m.insert("managedFields".into(), Value::Array(list.iter().map(Entry::to_json).collect()));
    }
}

fn cap_update_managers(list: &mut Vec<Entry>) {
    let updates = list.iter().filter(|e| e.operation == UPDATE).count();
    if updates <= MAX_UPDATE_MANAGERS {
        return;
    }
    // Fold the oldest Update entries into one until the cap holds.
    let mut olds: Vec<usize> = (0..list.len()).filter(|&i| list[i].operation == UPDATE && list[i].manager != "ancient-changes").collect();
    olds.sort_by(|&a, &b| list[a].time.cmp(&list[b].time));
    let has_ancient = list.iter().any(|e| e.operation == UPDATE && e.manager == "ancient-changes");
    let excess = updates - MAX_UPDATE_MANAGERS + usize::from(!has_ancient);
    let fold: Vec<usize> = olds.into_iter().take(excess).collect();
    let mut ancient = list.iter().position(|e| e.operation == UPDATE && e.manager == "ancient-changes").map(|i| list[i].clone()).unwrap_or(Entry {
        manager: "ancient-changes".into(),
        operation: UPDATE.into(),
        api_version: list[fold[0]].api_version.clone(),
        time: None,
        subresource: String::new(),
        fields: FieldSet::new(),
    });
    for &i in &fold {
        ancient.fields = ancient.fields.union(&list[i].fields);
        ancient.time = ancient.time.clone().max(list[i].time.clone());
    }
    let mut i = 0;
    list.retain(|e| {
        let keep = !(fold.contains(&i) || (e.operation == UPDATE && e.manager == "ancient-changes"));
        i += 1;
        keep
    });
    list.push(ancient);
}

/// Records a create, update or patch (anything but apply) by `w`: the
/// fields it added or changed become its own and no longer anybody
/// else's; fields it removed are nobody's. A client that sends
/// `managedFields` replaces the record with it; one that sends a single
/// empty entry clears it, as upstream documents.
pub fn record_update(old: Option<&Value>, new: &mut Value, w: &Writer) -> ApiResult<()> {
    let given = new.pointer("/metadata/managedFields").and_then(Value::as_array).is_some_and(|l| !l.is_empty());
    if old.is_none() && !given {
        // A create without a record: the writer owns everything, and the
        // set is written in one pass.
        let (exact, subtrees) = w.ignored();
        let fields = fieldset::all_fields_v1(new, &exact, &subtrees);
        if fields.as_object().is_some_and(|m| !m.is_empty()) {
            let mut entry = Entry::empty(w, UPDATE).to_json();
            entry["fieldsV1"] = fields;
            entry["time"] = json!(meta::now_rfc3339());
            meta_mut(new).insert("managedFields".into(), json!([entry]));
        }
        return Ok(());
    }
    let mut list = match new.pointer("/metadata/managedFields") {
        Some(Value::Array(given)) if !given.is_empty() => {
            if given.iter().all(|e| e.as_object().is_some_and(Map::is_empty)) {
                meta_mut(new).remove("managedFields");
                return Ok(());
            }
            entries(new).map_err(|why| invalid_managed_fields(new, why))?
        }
        _ => old.map(|o| entries(o).unwrap_or_default()).unwrap_or_default(),
    };
    let empty = json!({});
    let c = compare(old.unwrap_or(&empty), new);
    let (added, modified, removed) = (w.filter(&c.added), w.filter(&c.modified), w.filter(&c.removed));
    let taken = added.union(&modified);
    let mine = list.iter().position(|e| e.is(&w.manager, UPDATE, &w.api_version, &w.subresource));
    let mut entry = take_over(&mut list, mine, &taken, &removed, w, UPDATE);
    let fields = entry.fields.difference(&removed).union(&taken);
    if fields != entry.fields || !taken.is_empty() {
        entry.time = Some(meta::now_rfc3339());
    }
    entry.fields = fields;
    list.push(entry);
    store(new, list);
    Ok(())
}

/// The writer's side of a write: every other entry loses the fields the
/// writer `taken` and those `removed`; the writer's entry (at `mine`, or a
/// new one for `operation`) is taken out of the list for the caller to
/// update and put back.
fn take_over(list: &mut Vec<Entry>, mine: Option<usize>, taken: &FieldSet, removed: &FieldSet, w: &Writer, operation: &str) -> Entry {
    for (i, e) in list.iter_mut().enumerate() {
        if Some(i) != mine {
            e.fields = e.fields.difference(taken).difference(removed);
        }
    }
    match mine {
        Some(i) => list.remove(i),
        None => Entry::empty(w, operation),
    }
}

fn invalid_managed_fields(obj: &Value, why: String) -> ApiError {
    ApiError::invalid(
        &Subject { group: String::new(), kind: obj.get("kind").and_then(Value::as_str).unwrap_or("").into(), name: meta::name(obj).into() },
        vec![Cause::invalid("metadata.managedFields", &json!("…"), why)],
    )
}

/// Server-side apply of `config` by `w` to `live` (None: the object does
/// not exist yet). Returns the object to store, with its managedFields.
pub fn apply(live: Option<&Value>, config: &Value, w: &Writer, force: bool) -> ApiResult<Value> {
    let empty = json!({});
    let live_obj = live.unwrap_or(&empty);
    let mut list = entries(live_obj).unwrap_or_default();
    if live.is_some() && list.is_empty() {
        // An object nobody recorded (written before fields were tracked):
        // everything in it belongs to one manager, as upstream names it.
        list.push(Entry {
            manager: "before-first-apply".into(),
            operation: UPDATE.into(),
            api_version: w.api_version.clone(),
            time: None,
            subresource: String::new(),
            fields: w.filter(&applied_set(live_obj)),
        });
    }
    let applied = w.filter(&applied_set(config));
    let mine = list.iter().position(|e| e.is(&w.manager, APPLY, &w.api_version, &w.subresource));
    let last = mine.map(|i| list[i].fields.clone()).unwrap_or_default();

    let mut merged = live_obj.clone();
    merge::merge(&mut merged, config);
    let others = list.iter().enumerate().filter(|(i, _)| Some(*i) != mine).fold(FieldSet::new(), |acc, (_, e)| acc.union(&e.fields));
    merge::prune(&mut merged, &last, &applied.union(&others));

    let c = compare(live_obj, &merged);
    let changed = w.filter(&c.added.union(&c.modified));
    let removed = w.filter(&c.removed);
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for (i, e) in list.iter().enumerate() {
        if Some(i) != mine {
            conflicts.extend(e.fields.intersection(&changed).iter().map(|p| (e.describe(), p.clone())));
        }
    }
    if !conflicts.is_empty() && !force && w.manager == KUBECTL {
        // kubectl moving an object from client-side apply: fields still at
        // the value of its last client-side apply are taken without a
        // conflict, as upstream's apiserver allows.
        let allowed = unchanged_since_last_applied(live_obj);
        conflicts.retain(|(_, p)| !allowed.contains(p));
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(conflicts));
    }
    let mut entry = take_over(&mut list, mine, &changed, &removed, w, APPLY);
    if entry.time.is_none() || entry.fields != applied || !changed.is_empty() || !removed.is_empty() {
        entry.time = Some(meta::now_rfc3339());
    }
    entry.fields = applied;
    entry.api_version = w.api_version.clone();
    list.push(entry);
    store(&mut merged, list);
    if w.manager == KUBECTL && last_applied(live_obj).is_some() {
        // Keep client-side apply's record in step, so that a later
        // client-side apply still computes the right three-way merge.
        let mut record = config.clone();
        if let Some(a) = record.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
            a.remove(LAST_APPLIED);
            if a.is_empty() {
                record["metadata"].as_object_mut().expect("has annotations").remove("annotations");
            }
        }
        let text = serde_json::to_string(&record).expect("JSON serializes") + "\n";
        let annotations = meta_mut(&mut merged).entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(LAST_APPLIED.into(), json!(text));
        }
    }
    Ok(merged)
}

/// The manager kubectl applies as, which upstream treats specially.
const KUBECTL: &str = "kubectl";
/// Where client-side apply keeps the configuration it applied last.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn last_applied(obj: &Value) -> Option<Value> {
    let text = obj.pointer("/metadata/annotations")?.get(LAST_APPLIED)?.as_str()?;
    serde_json::from_str(text).ok()
}

/// The fields whose live value is still what client-side apply set.
fn unchanged_since_last_applied(live: &Value) -> FieldSet {
    let Some(recorded) = last_applied(live) else { return FieldSet::new() };
    let then = fieldset::walk(&recorded);
    fieldset::walk(live).into_iter().filter(|(p, n)| matches!(n, fieldset::Node::Leaf(_)) && then.get(p) == Some(n)).map(|(p, _)| p).collect()
}

/// 409 Conflict naming each field and who holds it, as upstream words it.
fn conflict_error(mut conflicts: Vec<(String, Path)>) -> ApiError {
    conflicts.sort();
    let message = if conflicts.len() == 1 {
        format!("Apply failed with 1 conflict: conflict with {}: {}", conflicts[0].0, display(&conflicts[0].1))
    } else {
        let mut lines = Vec::new();
        let mut current: Option<&str> = None;
        for (who, path) in &conflicts {
            if current != Some(who.as_str()) {
                lines.push(format!("conflicts with {who}:"));
                current = Some(who);
            }
            lines.push(format!("- {}", display(path)));
        }
        format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(who, path)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {who}"), "field": display(path)}))
        .collect();
    ApiError { code: 409, reason: "Conflict", message, details: Some(json!({"causes": causes})) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(manager: &str) -> Writer {
        Writer { manager: manager.into(), api_version: "apps/v1".into(), subresource: String::new(), has_status: true }
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": image}]}}}
        })
    }

    fn managers(obj: &Value) -> Vec<(String, String)> {
        entries(obj).unwrap().into_iter().map(|e| (e.manager, e.operation)).collect()
    }

    #[test]
    fn apply_then_another_manager_conflicts_unless_forced() {
        let created = apply(None, &deployment(2, "nginx:1"), &writer("alice"), false).unwrap();
        assert_eq!(managers(&created), vec![("alice".into(), APPLY.into())]);
        // Same values: shared ownership, no conflict.
        let shared = apply(Some(&created), &deployment(2, "nginx:1"), &writer("bob"), false).unwrap();
        assert_eq!(managers(&shared).len(), 2);
        // A different value for a field alice holds: 409.
        let err = apply(Some(&created), &deployment(3, "nginx:1"), &writer("bob"), false).unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(err.message, r#"Apply failed with 1 conflict: conflict with "alice": .spec.replicas"#);
        assert_eq!(err.details.unwrap()["causes"][0]["field"], ".spec.replicas");
        // Forced: bob takes the field from alice.
        let forced = apply(Some(&created), &deployment(3, "nginx:1"), &writer("bob"), true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let alice = entries(&forced).unwrap().into_iter().find(|e| e.manager == "alice").unwrap();
        assert!(!alice.fields.contains(&vec![field("spec"), field("replicas")]));
    }

    #[test]
    fn reapplying_without_a_field_removes_it() {
        let mut config = deployment(2, "nginx:1");
        config["metadata"]["labels"]["tier"] = json!("front");
        let created = apply(None, &config, &writer("alice"), false).unwrap();
        let again = apply(Some(&created), &deployment(2, "nginx:1"), &writer("alice"), false).unwrap();
        assert_eq!(again["metadata"]["labels"], json!({"app": "web"}));
    }

    #[test]
    fn an_update_takes_the_fields_it_changes() {
        let created = apply(None, &deployment(2, "nginx:1"), &writer("alice"), false).unwrap();
        let mut edited = created.clone();
        edited["spec"]["replicas"] = json!(5);
        record_update(Some(&created), &mut edited, &writer("kubectl-scale")).unwrap();
        let list = entries(&edited).unwrap();
        let scale = list.iter().find(|e| e.manager == "kubectl-scale").unwrap();
        assert_eq!(scale.operation, UPDATE);
        assert!(scale.fields.contains(&vec![field("spec"), field("replicas")]));
        let alice = list.iter().find(|e| e.manager == "alice").unwrap();
        assert!(!alice.fields.contains(&vec![field("spec"), field("replicas")]));
        // Now alice re-applying replicas 2 conflicts with the Update manager.
        let err = apply(Some(&edited), &deployment(2, "nginx:1"), &writer("alice"), false).unwrap_err();
        assert_eq!(err.message, r#"Apply failed with 1 conflict: conflict with "kubectl-scale" using apps/v1: .spec.replicas"#);
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        let created = apply(None, &deployment(2, "nginx:1"), &writer("alice"), false).unwrap();
        let mut same = created.clone();
        record_update(Some(&created), &mut same, &writer("bob")).unwrap();
        assert_eq!(same, created);
    }

    #[test]
    fn one_empty_entry_clears_the_record() {
        let created = apply(None, &deployment(2, "nginx:1"), &writer("alice"), false).unwrap();
        let mut cleared = created.clone();
        cleared["metadata"]["managedFields"] = json!([{}]);
        record_update(Some(&created), &mut cleared, &writer("bob")).unwrap();
        assert!(cleared["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn many_update_managers_fold_into_ancient_changes() {
        let mut obj = json!({"metadata": {"name": "x"}, "data": {}});
        for i in 0..12 {
            let old = obj.clone();
            obj["data"][format!("k{i}")] = json!("v");
            record_update(Some(&old), &mut obj, &Writer { manager: format!("m{i}"), api_version: "v1".into(), subresource: String::new(), has_status: false })
                .unwrap();
        }
        let list = entries(&obj).unwrap();
        assert_eq!(list.len(), MAX_UPDATE_MANAGERS);
        assert!(list.iter().any(|e| e.manager == "ancient-changes"));
    }
}
