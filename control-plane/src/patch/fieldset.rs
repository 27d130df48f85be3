//! Sets of field paths, as server-side apply records them in `metadata.managedFields`, and their
//! `FieldsV1` encoding: `{"f:spec":{"f:replicas":{}}}`, `k:{"name":"web"}` for keyed list items,
//! `v:"x"` for set members, `i:3` for positions, and `".":{}` when a node is itself a member and
//! also has children.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// Why a `fieldsV1` document could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FieldSetError {
    /// A node of the document is not an object.
    #[error("fieldsV1 entry {element:?} must be an object, got {found}")]
    NotAnObject {
        /// The key holding the value ("" for the document itself).
        element: String,
        /// JSON type found.
        found: &'static str,
    },
    /// A key is not `f:`, `k:`, `v:` or `i:` followed by valid content.
    #[error("invalid fieldsV1 path element {element:?}: expected f:<name>, k:<object>, v:<value> or i:<index>")]
    InvalidElement {
        /// The key.
        element: String,
    },
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq)]
pub enum PathElement {
    /// A field of an object.
    Field(String),
    /// The element of an associative list with these key values (sorted by field name).
    Key(Vec<(String, Value)>),
    /// The element of a set with this value.
    Value(Value),
    /// The element at this position of an atomic list.
    Index(usize),
}

impl PathElement {
    /// A list-item key, with its fields sorted as the encoding requires.
    pub fn key(mut fields: Vec<(String, Value)>) -> Self {
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        PathElement::Key(fields)
    }

    /// The `FieldsV1` form: `f:name`, `k:{"name":"web"}`, `v:"x"`, `i:0`.
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let object: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(object))
            }
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    /// Parses the `FieldsV1` form.
    pub fn decode(encoded: &str) -> Result<Self, FieldSetError> {
        let invalid = || FieldSetError::InvalidElement {
            element: encoded.to_owned(),
        };
        let (kind, rest) = encoded.split_once(':').ok_or_else(invalid)?;
        match kind {
            "f" => Ok(PathElement::Field(rest.to_owned())),
            "v" => serde_json::from_str(rest)
                .map(PathElement::Value)
                .map_err(|_| invalid()),
            "i" => rest.parse().map(PathElement::Index).map_err(|_| invalid()),
            "k" => match serde_json::from_str(rest) {
                Ok(Value::Object(fields)) => Ok(PathElement::key(fields.into_iter().collect())),
                _ => Err(invalid()),
            },
            _ => Err(invalid()),
        }
    }
}

/// The form Kubernetes prints in conflict messages: `.name`, `[name="web"]`, `[="x"]`, `[3]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(value) => write!(f, "[={value}]"),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A whole path in Kubernetes' printed form, e.g. `.spec.template.spec.containers[name="web"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of field paths, stored as a tree keyed by encoded path elements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSet {
    children: BTreeMap<String, Child>,
}

/// Invariant: a child is a member, or has a non-empty set below it.
#[derive(Debug, Clone, PartialEq)]
struct Child {
    element: PathElement,
    member: bool,
    set: FieldSet,
}

static EMPTY: FieldSet = FieldSet {
    children: BTreeMap::new(),
};

impl FieldSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the set has no paths.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Adds `path` (an empty path adds nothing: the root is never a member).
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let child = self
            .children
            .entry(first.encode())
            .or_insert_with(|| Child {
                element: first.clone(),
                member: false,
                set: FieldSet::new(),
            });
        if rest.is_empty() {
            child.member = true;
        } else {
            child.set.insert(rest);
        }
    }

    /// Whether `path` itself is in the set.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        match path.split_first() {
            None => false,
            Some((first, [])) => self.get(first).is_some_and(|(member, _)| member),
            Some((first, rest)) => self.get(first).is_some_and(|(_, set)| set.contains(rest)),
        }
    }

    /// For the child `element`: whether it is a member, and the paths below it. `None` when
    /// neither it nor anything below it is in the set.
    pub fn get(&self, element: &PathElement) -> Option<(bool, &FieldSet)> {
        self.children
            .get(&element.encode())
            .map(|child| (child.member, &child.set))
    }

    /// The paths below `element` (empty when there are none).
    pub fn below(&self, element: &PathElement) -> &FieldSet {
        self.get(element).map_or(&EMPTY, |(_, set)| set)
    }

    /// Removes `element` and everything below it.
    pub fn remove(&mut self, element: &PathElement) {
        self.children.remove(&element.encode());
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        for (key, theirs) in &other.children {
            match out.children.get_mut(key) {
                Some(ours) => {
                    ours.member |= theirs.member;
                    ours.set = ours.set.union(&theirs.set);
                }
                None => {
                    out.children.insert(key.clone(), theirs.clone());
                }
            }
        }
        out
    }

    /// Paths in `self` but not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        self.combine(other, true, |ours, theirs| ours && !theirs)
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        self.combine(other, false, |ours, theirs| ours && theirs)
    }

    /// Walks children of `self`; those missing from `other` are kept whole when `keep_unmatched`.
    fn combine(
        &self,
        other: &FieldSet,
        keep_unmatched: bool,
        member: fn(bool, bool) -> bool,
    ) -> FieldSet {
        let mut out = FieldSet::new();
        for (key, ours) in &self.children {
            let child = match other.children.get(key) {
                None if keep_unmatched => ours.clone(),
                None => continue,
                Some(theirs) => Child {
                    element: ours.element.clone(),
                    member: member(ours.member, theirs.member),
                    set: ours.set.combine(&theirs.set, keep_unmatched, member),
                },
            };
            if child.member || !child.set.is_empty() {
                out.children.insert(key.clone(), child);
            }
        }
        out
    }

    /// Every member path, in encoding order.
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        for child in self.children.values() {
            prefix.push(child.element.clone());
            if child.member {
                out.push(prefix.clone());
            }
            child.set.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `fieldsV1` document. `"."` is written first, as kubectl shows it.
    pub fn to_fields_v1(&self) -> Value {
        let mut object = Map::new();
        for (key, child) in &self.children {
            let mut inner = Map::new();
            if child.member && !child.set.is_empty() {
                inner.insert(".".to_owned(), Value::Object(Map::new()));
            }
            if let Value::Object(below) = child.set.to_fields_v1() {
                inner.extend(below);
            }
            object.insert(key.clone(), Value::Object(inner));
        }
        Value::Object(object)
    }

    /// Reads a `fieldsV1` document.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, FieldSetError> {
        Ok(Self::read(value, "")?.0)
    }

    /// Returns the set below `value` and whether `value` marks its own path as a member.
    fn read(value: &Value, element: &str) -> Result<(FieldSet, bool), FieldSetError> {
        let object = value
            .as_object()
            .ok_or_else(|| FieldSetError::NotAnObject {
                element: element.to_owned(),
                found: super::strategic::json_type(value),
            })?;
        let mut set = FieldSet::new();
        let mut member = object.is_empty();
        for (key, inner) in object {
            if key == "." {
                member = true;
                continue;
            }
            let parsed = PathElement::decode(key)?;
            let (below, child_member) = Self::read(inner, key)?;
            // Re-encode so equal elements written differently (key order) share one entry.
            set.children.insert(
                parsed.encode(),
                Child {
                    element: parsed,
                    member: child_member,
                    set: below,
                },
            );
        }
        Ok((set, member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_owned())
    }

    fn web() -> PathElement {
        PathElement::key(vec![("name".to_owned(), json!("web"))])
    }

    #[test]
    fn encodes_like_kubernetes_managed_fields() {
        let mut set = FieldSet::new();
        set.insert(&[field("spec"), field("replicas")]);
        let containers = [field("spec"), field("containers"), web()];
        set.insert(&containers);
        set.insert(&[field("spec"), field("containers"), web(), field("name")]);
        set.insert(&[
            field("metadata"),
            field("finalizers"),
            PathElement::Value(json!("x")),
        ]);
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:finalizers": {"v:\"x\"": {}}},
                "f:spec": {
                    "f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:name": {}}},
                    "f:replicas": {}
                }
            })
        );
        assert_eq!(
            FieldSet::from_fields_v1(&set.to_fields_v1()),
            Ok(set.clone())
        );
        assert!(set.contains(&containers));
        assert!(!set.contains(&[field("spec")]));
    }

    #[test]
    fn key_order_in_the_encoding_does_not_matter() {
        let written = json!({"f:ports": {"k:{\"protocol\":\"TCP\",\"containerPort\":80}": {}}});
        let set = FieldSet::from_fields_v1(&written);
        let port = PathElement::key(vec![
            ("containerPort".to_owned(), json!(80)),
            ("protocol".to_owned(), json!("TCP")),
        ]);
        assert!(set.is_ok_and(|set| set.contains(&[field("ports"), port])));
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&[field("spec"), field("replicas")]);
        a.insert(&[field("spec"), field("paused")]);
        let mut b = FieldSet::new();
        b.insert(&[field("spec"), field("replicas")]);
        b.insert(&[field("metadata"), field("labels"), field("app")]);

        let only_a = a.difference(&b);
        assert_eq!(only_a.paths(), vec![vec![field("spec"), field("paused")]]);
        assert_eq!(
            a.intersection(&b).paths(),
            vec![vec![field("spec"), field("replicas")]]
        );
        assert_eq!(a.union(&b).paths().len(), 3);
        assert!(a.difference(&a).is_empty());
    }

    #[test]
    fn prints_paths_like_conflict_messages() {
        let path = [field("spec"), field("containers"), web(), field("image")];
        assert_eq!(path_string(&path), ".spec.containers[name=\"web\"].image");
        let port = PathElement::key(vec![
            ("protocol".to_owned(), json!("TCP")),
            ("containerPort".to_owned(), json!(80)),
        ]);
        assert_eq!(port.to_string(), "[containerPort=80,protocol=\"TCP\"]");
        assert_eq!(PathElement::Value(json!("a")).to_string(), "[=\"a\"]");
    }

    #[test]
    fn malformed_documents_are_refused() {
        assert!(matches!(
            FieldSet::from_fields_v1(&json!({"x:spec": {}})),
            Err(FieldSetError::InvalidElement { .. })
        ));
        assert!(matches!(
            FieldSet::from_fields_v1(&json!({"k:[1]": {}})),
            Err(FieldSetError::InvalidElement { .. })
        ));
        assert!(matches!(
            FieldSet::from_fields_v1(&json!({"f:spec": 1})),
            Err(FieldSetError::NotAnObject {
                found: "number",
                ..
            })
        ));
        assert!(matches!(
            FieldSet::from_fields_v1(&json!([])),
            Err(FieldSetError::NotAnObject { .. })
        ));
    }
}
