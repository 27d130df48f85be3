//! Conversion of the `metav1.LabelSelector` object form (`matchLabels`, `matchExpressions`)
//! into a [`Selector`], as Kubernetes' `LabelSelectorAsSelector`.

use serde_json::Value;

use super::{LabelSelectorError, Operator, Requirement, Selector};

impl Selector {
    /// Converts a `metav1.LabelSelector` JSON object (`matchLabels`, `matchExpressions` with
    /// In, NotIn, Exists, DoesNotExist), as Kubernetes' `LabelSelectorAsSelector` does:
    /// `null` (pass it for an absent field too) gives [`Selector::nothing`], and an object with
    /// no labels and no expressions gives [`Selector::everything`].
    ///
    /// # Errors
    ///
    /// [`LabelSelectorError::Malformed`] for fields of the wrong JSON type,
    /// [`LabelSelectorError::UnknownOperator`], or a validation error as for
    /// [`Requirement::new`].
    pub fn from_label_selector(selector: &Value) -> Result<Self, LabelSelectorError> {
        let object = match selector {
            Value::Null => return Ok(Selector::nothing()),
            Value::Object(object) => object,
            _ => return Err(malformed("the selector", "must be an object or null")),
        };
        let match_labels = match object.get("matchLabels") {
            None | Some(Value::Null) => None,
            Some(Value::Object(labels)) => Some(labels),
            Some(_) => return Err(malformed("matchLabels", "must be an object")),
        };
        let expressions: &[Value] = match object.get("matchExpressions") {
            None | Some(Value::Null) => &[],
            Some(Value::Array(expressions)) => expressions,
            Some(_) => return Err(malformed("matchExpressions", "must be an array")),
        };
        let mut requirements = Vec::new();
        for (key, value) in match_labels.into_iter().flatten() {
            let Some(value) = value.as_str() else {
                return Err(malformed(
                    &format!("matchLabels[{key:?}]"),
                    "must be a string",
                ));
            };
            requirements.push(Requirement::new(
                key.as_str(),
                Operator::Equals,
                vec![value.to_owned()],
            )?);
        }
        for (index, expression) in expressions.iter().enumerate() {
            requirements.push(expression_requirement(index, expression)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector {
            requirements: Some(requirements),
        })
    }
}

fn malformed(field: &str, problem: &'static str) -> LabelSelectorError {
    LabelSelectorError::Malformed {
        field: field.to_owned(),
        problem,
    }
}

/// Converts one `matchExpressions` entry; a missing key or operator is treated as the empty
/// string, which then fails validation, as decoding into Go structs would.
fn expression_requirement(
    index: usize,
    expression: &Value,
) -> Result<Requirement, LabelSelectorError> {
    let field = |name: &str| format!("matchExpressions[{index}].{name}");
    let Some(expression) = expression.as_object() else {
        return Err(malformed(
            &format!("matchExpressions[{index}]"),
            "must be an object",
        ));
    };
    let text = |name: &str| match expression.get(name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(malformed(&field(name), "must be a string")),
    };
    let key = text("key")?;
    let operator = match text("operator")? {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(LabelSelectorError::UnknownOperator {
                operator: other.to_owned(),
            })
        }
    };
    let values = match expression.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed(&field("values"), "must be an array of strings"))?,
        Some(_) => return Err(malformed(&field("values"), "must be an array of strings")),
    };
    Requirement::new(key, operator, values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn error_text<T>(result: Result<T, LabelSelectorError>) -> String {
        result.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn label_selector_objects() -> Result<(), LabelSelectorError> {
        let selector = Selector::from_label_selector(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "team", "operator": "Exists", "values": null},
            ]
        }))?;
        assert_eq!(
            selector.to_string(),
            "app=web,!canary,env notin (prod),team,tier in (a,b)"
        );
        assert!(selector.matches(&set(&[("app", "web"), ("tier", "a"), ("team", "x")])));
        assert!(!selector.matches(&set(&[("app", "web"), ("tier", "a")])));
        let canary = set(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("canary", "1"),
        ]);
        assert!(!selector.matches(&canary));
        assert_eq!(selector.requirements()[4].values(), ["b", "a"]);
        Ok(())
    }

    #[test]
    fn null_selector_matches_nothing_and_empty_selector_everything(
    ) -> Result<(), LabelSelectorError> {
        let labels = set(&[("a", "b")]);
        assert!(Selector::from_label_selector(&Value::Null)?.matches_nothing());
        let empty = Selector::from_label_selector(&json!({}))?;
        assert!(empty.is_empty() && empty.matches(&labels));
        let empty = json!({"matchLabels": {}, "matchExpressions": []});
        assert!(Selector::from_label_selector(&empty)?.matches(&labels));
        let nulls = json!({"matchLabels": null, "matchExpressions": null});
        assert!(Selector::from_label_selector(&nulls)?.matches(&labels));
        Ok(())
    }

    #[test]
    fn bad_label_selector_objects() {
        let bad = |v: Value| Selector::from_label_selector(&v);
        assert!(matches!(
            bad(json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})),
            Err(LabelSelectorError::UnknownOperator { operator }) if operator == "Gt"
        ));
        assert!(matches!(
            bad(json!({"matchExpressions": [{"key": "a"}]})),
            Err(LabelSelectorError::UnknownOperator { operator }) if operator.is_empty()
        ));
        assert!(matches!(
            bad(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})),
            Err(LabelSelectorError::ValueCount {
                operator: Operator::In,
                ..
            })
        ));
        assert!(matches!(
            bad(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})),
            Err(LabelSelectorError::ValueCount { .. })
        ));
        assert!(matches!(
            bad(json!({"matchExpressions": [{"operator": "Exists"}]})),
            Err(LabelSelectorError::InvalidKey { key, .. }) if key.is_empty()
        ));
        assert!(matches!(
            bad(json!({"matchLabels": {"app": "bad value"}})),
            Err(LabelSelectorError::InvalidValue { .. })
        ));
        let malformed = [
            json!("app=web"),
            json!([]),
            json!({"matchLabels": ["app"]}),
            json!({"matchLabels": {"app": 1}}),
            json!({"matchExpressions": {}}),
            json!({"matchExpressions": ["a"]}),
            json!({"matchExpressions": [{"key": 1, "operator": "Exists"}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}),
        ];
        for value in malformed {
            let result = bad(value.clone());
            assert!(
                matches!(result, Err(LabelSelectorError::Malformed { .. })),
                "{value}: {result:?}"
            );
        }
        assert_eq!(
            error_text(bad(
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]})
            )),
            "malformed label selector: matchExpressions[0].values must be an array of strings"
        );
    }
}
