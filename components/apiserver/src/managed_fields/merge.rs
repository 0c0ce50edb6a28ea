//! Applying a configuration to a live object: the merge, and the removal
//! of what the applier set last time and no longer does.

use serde_json::Value;

use super::fieldset::{field, key_element, parse, Element, FieldSet, Path};
use super::schema::{self, ListKind};

/// Merges an applied configuration into the live object as upstream's
/// typed merge does: objects field by field, keyed lists item by item
/// (live order kept, new items after), sets as unions; scalars and atomic
/// values are replaced. A null in the configuration removes the field.
pub fn merge(live: &mut Value, config: &Value) {
    merge_at(&mut Vec::new(), live, config);
}

fn merge_at(path: &mut Path, live: &mut Value, config: &Value) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !schema::atomic_map(path, c) => {
            for (k, cv) in c {
                path.push(field(k));
                if cv.is_null() {
                    l.remove(k);
                } else if let Some(lv) = l.get_mut(k) {
                    merge_at(path, lv, cv);
                } else {
                    l.insert(k.clone(), cv.clone());
                }
                path.pop();
            }
        }
        (Value::Array(l), Value::Array(c)) => match schema::list_kind(path, c) {
            ListKind::Keyed(keys) => {
                for item in c {
                    let key = key_element(keys, item);
                    match l.iter_mut().find(|li| key.is_some() && key_element(keys, li) == key) {
                        Some(li) => {
                            path.push(key.clone().expect("matched on a key"));
                            merge_at(path, li, item);
                            path.pop();
                        }
                        None => l.push(item.clone()),
                    }
                }
            }
            ListKind::Set => {
                for item in c {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            ListKind::Atomic => *l = c.clone(),
        },
        (live, config) => *live = config.clone(),
    }
}

/// Removes from `merged` what the applier owned last time (`last`) and
/// nobody owns now (`kept`: every manager's fields, the applier's new ones
/// among them). A list item goes with its fields; an item that stays keeps
/// its key fields.
pub fn prune(merged: &mut Value, last: &FieldSet, kept: &FieldSet) {
    let candidates = last.difference(kept);
    // Below a path come its descendants: backwards, they go first.
    let ordered: Vec<&Path> = candidates.iter().collect();
    for path in ordered.into_iter().rev() {
        if kept.has_within(path) {
            continue;
        }
        if let Some((last_elem, parent)) = path.split_last() {
            let is_key_field = match (parse(last_elem), parent.last().map(|p| parse(p))) {
                (Ok(Element::Field(f)), Some(Ok(Element::Key(keys)))) => keys.contains_key(&f),
                _ => false,
            };
            // Key fields go with their item or stay with it.
            if is_key_field {
                continue;
            }
        }
        remove(merged, path);
    }
}

/// Removes what `path` names; false when nothing is there.
pub fn remove(obj: &mut Value, path: &[String]) -> bool {
    let Some((last, parent_path)) = path.split_last() else { return false };
    let Some(parent) = lookup_mut(obj, parent_path) else { return false };
    match (parse(last), parent) {
        (Ok(Element::Field(f)), Value::Object(m)) => m.remove(&f).is_some(),
        (Ok(Element::Key(_)), Value::Array(items)) => {
            let ListKind::Keyed(keys) = schema::list_kind(parent_path, items) else { return false };
            let wanted = normalized(last);
            let before = items.len();
            items.retain(|i| key_element(keys, i) != wanted);
            items.len() != before
        }
        (Ok(Element::Value(v)), Value::Array(items)) => {
            let before = items.len();
            items.retain(|i| *i != v);
            items.len() != before
        }
        (Ok(Element::Index(i)), Value::Array(items)) if i < items.len() => {
            items.remove(i);
            true
        }
        _ => false,
    }
}

/// A `k:` element rewritten as `key_element` writes it (sorted, compact).
fn normalized(element: &str) -> Option<String> {
    match parse(element) {
        Ok(Element::Key(m)) => {
            let sorted: std::collections::BTreeMap<&String, &Value> = m.iter().collect();
            Some(format!("k:{}", serde_json::to_string(&sorted).expect("JSON values serialize")))
        }
        _ => None,
    }
}

fn lookup_mut<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = obj;
    for (i, e) in path.iter().enumerate() {
        cur = match (parse(e).ok()?, cur) {
            (Element::Field(f), Value::Object(m)) => m.get_mut(&f)?,
            (Element::Key(_), Value::Array(items)) => {
                let ListKind::Keyed(keys) = schema::list_kind(&path[..i], items) else { return None };
                let wanted = normalized(e);
                items.iter_mut().find(|it| key_element(keys, it) == wanted)?
            }
            (Element::Value(v), Value::Array(items)) => items.iter_mut().find(|it| **it == v)?,
            (Element::Index(n), Value::Array(items)) => items.get_mut(n)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managed_fields::fieldset::applied_set;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_scalars_are_replaced() {
        let mut live = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "resources": {"limits": {"cpu": "1"}}},
            {"name": "b", "image": "b:1"}
        ]}}}});
        let config = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "a", "image": "a:2"}, {"name": "c", "image": "c:1"}
        ]}}}});
        merge(&mut live, &config);
        assert_eq!(live["spec"]["replicas"], 3);
        let cs = live.pointer("/spec/template/spec/containers").unwrap();
        assert_eq!(cs[0], json!({"name": "a", "image": "a:2", "resources": {"limits": {"cpu": "1"}}}));
        assert_eq!(cs[1]["name"], "b");
        assert_eq!(cs[2]["name"], "c");
    }

    #[test]
    fn prune_removes_what_only_the_applier_held() {
        let first = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [
            {"name": "x", "image": "x"}, {"name": "y", "image": "y"}
        ]}});
        let second = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "x", "image": "x"}]}});
        let mut merged = first.clone();
        merge(&mut merged, &second);
        // Someone else owns y's image: y stays, with its name, without the rest.
        let mut other = FieldSet::new();
        other.insert(vec!["f:spec".into(), "f:containers".into(), r#"k:{"name":"y"}"#.into(), "f:image".into()]);
        prune(&mut merged, &applied_set(&first), &applied_set(&second).union(&other));
        assert_eq!(
            merged,
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [
                {"name": "x", "image": "x"}, {"name": "y", "image": "y"}
            ]}})
        );
        // Nobody else: y goes.
        let mut merged = first.clone();
        merge(&mut merged, &second);
        prune(&mut merged, &applied_set(&first), &applied_set(&second));
        assert_eq!(merged, second);
    }

    #[test]
    fn ports_are_found_by_their_defaulted_protocol() {
        let mut obj =
            json!({"spec": {"containers": [{"name": "x", "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]}]}});
        let path: Path =
            vec!["f:spec".into(), "f:containers".into(), r#"k:{"name":"x"}"#.into(), "f:ports".into(), r#"k:{"containerPort":80,"protocol":"TCP"}"#.into()];
        assert!(remove(&mut obj, &path));
        assert_eq!(obj.pointer("/spec/containers/0/ports").unwrap(), &json!([{"containerPort": 53, "protocol": "UDP"}]));
        assert!(!remove(&mut obj, &path));
    }
}
