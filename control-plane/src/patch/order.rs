//! Element order after a list merge, shared by strategic merge patch and server-side apply.
//!
//! Kubernetes' rule (the "preserve order in strategic merge patch" design): elements named by the
//! request keep the request's order; elements only the server has keep their relative server
//! order and are slotted in front of the first requested element that comes after them on the
//! server. When nothing relates two elements, the requested one goes first.

use std::collections::HashMap;

use serde_json::Value;

/// What identifies a list element.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Identity {
    /// The value of this field of an object element.
    Key(&'static str),
    /// The element itself (primitive sets).
    Whole,
}

impl Identity {
    /// The identity of `item`, if it has one.
    pub(crate) fn of(self, item: &Value) -> Option<&Value> {
        match self {
            Identity::Key(key) => item.get(key),
            Identity::Whole => Some(item),
        }
    }
}

/// Positions by identity, first occurrence winning. Identities are compared through their
/// canonical JSON so lookups stay linear on long lists.
pub(crate) struct Positions(HashMap<String, usize>);

impl Positions {
    /// Indexes `ids` by position.
    pub(crate) fn new<'a>(ids: impl Iterator<Item = Option<&'a Value>>) -> Self {
        let mut map = HashMap::new();
        for (at, id) in ids.enumerate() {
            if let Some(id) = id {
                map.entry(id.to_string()).or_insert(at);
            }
        }
        Positions(map)
    }

    /// Where `id` first appears.
    pub(crate) fn of(&self, id: Option<&Value>) -> Option<usize> {
        self.0.get(&id?.to_string()).copied()
    }
}

/// Orders `merged`: elements whose identity is in `order` follow `order`; the others keep their
/// order in `server` and are interleaved by their server positions.
pub(crate) fn arrange(
    merged: Vec<Value>,
    order: &[&Value],
    server: &[Value],
    identity: Identity,
) -> Vec<Value> {
    let order_at = Positions::new(order.iter().map(|id| Some(*id)));
    let server_at = Positions::new(server.iter().map(|item| identity.of(item)));
    // (position in order, position on the server, element)
    let (mut named, mut rest): (Vec<_>, Vec<_>) = merged
        .into_iter()
        .map(|item| {
            let id = identity.of(&item);
            (order_at.of(id), server_at.of(id), item)
        })
        .partition(|(in_order, _, _)| in_order.is_some());
    named.sort_by_key(|(in_order, _, _)| *in_order);
    rest.sort_by_key(|(_, on_server, _)| on_server.unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(named.len() + rest.len());
    let mut named = named.into_iter().peekable();
    let mut rest = rest.into_iter().peekable();
    while let (Some(left), Some(right)) = (rest.peek(), named.peek()) {
        let server_first = matches!((left.1, right.1), (Some(l), Some(r)) if l < r);
        out.extend(if server_first {
            rest.next()
        } else {
            named.next()
        });
    }
    out.extend(rest);
    out.extend(named);
    out.into_iter().map(|(_, _, item)| item).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(list: &[Value]) -> Vec<&str> {
        list.iter()
            .filter_map(|item| item.get("name")?.as_str())
            .collect()
    }

    #[test]
    fn server_only_items_slot_in_before_later_requested_items() {
        // Live [B, C, A], request [A, B, D]: C is server-only and sits before A on the server.
        let server = vec![
            json!({"name": "B"}),
            json!({"name": "C"}),
            json!({"name": "A"}),
        ];
        let merged = vec![
            json!({"name": "B"}),
            json!({"name": "C"}),
            json!({"name": "A"}),
            json!({"name": "D"}),
        ];
        let (a, b, d) = (json!("A"), json!("B"), json!("D"));
        let out = arrange(merged, &[&a, &b, &d], &server, Identity::Key("name"));
        assert_eq!(names(&out), ["C", "A", "B", "D"]);
    }

    #[test]
    fn unrelated_requested_items_go_first() {
        let server = vec![json!("x"), json!("y")];
        let merged = vec![json!("x"), json!("y"), json!("new")];
        let new = json!("new");
        let out = arrange(merged, &[&new], &server, Identity::Whole);
        assert_eq!(out, [json!("new"), json!("x"), json!("y")]);
    }
}
