//! Label selectors with the semantics of Kubernetes' `k8s.io/apimachinery/pkg/labels`.
//!
//! A [`Selector`] comes from the `?labelSelector=` string syntax ([`Selector::parse`]), from a
//! `metav1.LabelSelector` object such as a Deployment's `spec.selector`
//! ([`Selector::from_label_selector`]) or from a plain map such as a Service's `spec.selector`
//! ([`Selector::from_set`]).
//!
//! Two selectors match differently and print the same (`""`): [`Selector::everything`]
//! (an empty string, `{}`, an empty map) matches every object, while [`Selector::nothing`]
//! (a `null` or absent `LabelSelector`) matches none. Ask [`Selector::matches_nothing`] when it
//! matters.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::validation::{is_qualified_name, is_valid_label_value};

mod object;
mod parser;

/// A failure to build a label selector, from a string or from a `LabelSelector` object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelSelectorError {
    /// The string form is not well formed.
    #[error("unable to parse label selector {selector:?}: found {found}, expected: {expected}")]
    Syntax {
        /// The whole selector string.
        selector: String,
        /// The offending token, quoted, or "end of string".
        found: String,
        /// What the grammar allows at that point.
        expected: &'static str,
    },
    /// A key is not a qualified name.
    #[error("invalid label selector key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Kubernetes' validation messages, joined by "; ".
        reason: String,
    },
    /// A value is not a valid label value (or not an integer for `>`/`<`).
    #[error("invalid value {value:?} for label selector key {key:?}: {reason}")]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The value as given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// An operator got too many or too few values.
    #[error("invalid label selector requirement on {key:?} with operator '{operator}': {reason}")]
    ValueCount {
        /// The key of the requirement.
        key: String,
        /// Its operator.
        operator: Operator,
        /// What the operator needs.
        reason: &'static str,
    },
    /// A `matchExpressions` entry names an operator other than In, NotIn, Exists, DoesNotExist.
    #[error("{operator:?} is not a valid label selector operator (use In, NotIn, Exists or DoesNotExist)")]
    UnknownOperator {
        /// The operator as given.
        operator: String,
    },
    /// A `LabelSelector` object has a field of the wrong JSON type.
    #[error("malformed label selector: {field} {problem}")]
    Malformed {
        /// The path of the field inside the selector, e.g. `matchExpressions[0].values`.
        field: String,
        /// What the field must be.
        problem: &'static str,
    },
}

/// How a [`Requirement`] relates a label to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `k=v`: the label exists and equals the value.
    Equals,
    /// `k==v`: same as [`Operator::Equals`], kept apart so that it prints back as written.
    DoubleEquals,
    /// `k!=v`: the label is absent or differs from the value.
    NotEquals,
    /// `k in (a,b)`: the label exists and equals one of the values.
    In,
    /// `k notin (a,b)`: the label is absent or equals none of the values.
    NotIn,
    /// `k`: the label exists.
    Exists,
    /// `!k`: the label does not exist.
    DoesNotExist,
    /// `k>n`: the label exists and is an integer greater than `n`.
    GreaterThan,
    /// `k<n`: the label exists and is an integer less than `n`.
    LessThan,
}

impl fmt::Display for Operator {
    /// Prints the operator as Kubernetes' `selection.Operator` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        })
    }
}

/// One condition of a selector; a selector is the AND of its requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, validated as Kubernetes' `labels.NewRequirement` does: the key
    /// must be a qualified name, every value a label value; `in`/`notin` need at least one
    /// value, `=`/`==`/`!=` exactly one, `>`/`<` exactly one integer, `exists`/`!` none.
    ///
    /// # Errors
    ///
    /// [`LabelSelectorError::InvalidKey`], [`LabelSelectorError::ValueCount`] or
    /// [`LabelSelectorError::InvalidValue`] for the first rule broken.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Self, LabelSelectorError> {
        let key = key.into();
        check_key(&key)?;
        let count_error = match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            _ => None,
        };
        if let Some(reason) = count_error {
            return Err(LabelSelectorError::ValueCount {
                key,
                operator,
                reason,
            });
        }
        for value in &values {
            let mut reasons = is_valid_label_value(value);
            if matches!(operator, Operator::GreaterThan | Operator::LessThan)
                && value.parse::<i64>().is_err()
            {
                reasons.push("for 'Gt', 'Lt' operators, the value must be an integer".to_owned());
            }
            if !reasons.is_empty() {
                return Err(LabelSelectorError::InvalidValue {
                    key,
                    value: value.clone(),
                    reason: reasons.join("; "),
                });
            }
        }
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, in the order given (the string syntax yields them sorted and deduplicated).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn matches<'a>(&self, lookup: &impl Fn(&str) -> Option<&'a str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                lookup(&self.key).is_some_and(has)
            }
            Operator::NotEquals | Operator::NotIn => !lookup(&self.key).is_some_and(has),
            Operator::Exists => lookup(&self.key).is_some(),
            Operator::DoesNotExist => lookup(&self.key).is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                // A label that is not an integer matches neither way, as in Kubernetes.
                let label = lookup(&self.key).and_then(|v| v.parse::<i64>().ok());
                let bound = self.values.first().and_then(|v| v.parse::<i64>().ok());
                match (label, bound) {
                    (Some(l), Some(b)) if self.operator == Operator::GreaterThan => l > b,
                    (Some(l), Some(b)) => l < b,
                    _ => false,
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    /// Prints the requirement in the string syntax, values sorted, as Kubernetes does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Exists => return f.write_str(&self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let mut sorted: Vec<&str> = self.values.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let values = sorted.join(",");
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            write!(f, "{}{op}({values})", self.key)
        } else {
            write!(f, "{}{op}{values}", self.key)
        }
    }
}

/// A label selector: the AND of its requirements, or the selector that matches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// `None` for [`Selector::nothing`]; requirements sorted by key otherwise.
    requirements: Option<Vec<Requirement>>,
}

impl Selector {
    /// The selector that matches every object (an empty string or an empty `LabelSelector`).
    pub fn everything() -> Self {
        Selector {
            requirements: Some(Vec::new()),
        }
    }

    /// The selector that matches no object: what a `null` `LabelSelector` means in Kubernetes.
    pub fn nothing() -> Self {
        Selector { requirements: None }
    }

    /// Parses the `?labelSelector=` syntax: comma-separated (AND) requirements of the forms
    /// `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>n`, `k<n`, with
    /// optional whitespace between tokens. An empty or blank string selects everything.
    ///
    /// # Errors
    ///
    /// [`LabelSelectorError::Syntax`] for malformed input, or a validation error for a bad
    /// key, value or number of values.
    pub fn parse(selector: &str) -> Result<Self, LabelSelectorError> {
        let mut requirements = parser::parse(selector)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector {
            requirements: Some(requirements),
        })
    }

    /// Builds the selector that requires every label of `set` to be present with its value,
    /// as Kubernetes' `ValidatedSelectorFromSet` (a Service's or ReplicationController's
    /// `spec.selector`). An empty set selects everything.
    ///
    /// # Errors
    ///
    /// A validation error for the first key or value that is not valid.
    pub fn from_set(set: &BTreeMap<String, String>) -> Result<Self, LabelSelectorError> {
        let requirements = set
            .iter()
            .map(|(k, v)| Requirement::new(k.as_str(), Operator::Equals, vec![v.clone()]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selector {
            requirements: Some(requirements),
        })
    }

    /// Whether the selector matches objects carrying `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_lookup(|key| labels.get(key).map(String::as_str))
    }

    /// Whether the selector matches a JSON object by its `metadata.labels` (missing labels
    /// count as none; non-string label values count as absent).
    pub fn matches_object(&self, object: &Value) -> bool {
        let labels: Option<&Map<String, Value>> = object
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        self.matches_lookup(|key| labels.and_then(|l| l.get(key)).and_then(Value::as_str))
    }

    /// Whether the selector matches labels found through `lookup`, which returns the value of
    /// a label key or `None` when the object lacks it.
    pub fn matches_lookup<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        match &self.requirements {
            None => false,
            Some(requirements) => requirements.iter().all(|r| r.matches(&lookup)),
        }
    }

    /// Whether the selector restricts nothing (so it matches everything).
    /// [`Selector::nothing`] is not empty.
    pub fn is_empty(&self) -> bool {
        self.requirements.as_ref().is_some_and(Vec::is_empty)
    }

    /// Whether this is [`Selector::nothing`].
    pub fn matches_nothing(&self) -> bool {
        self.requirements.is_none()
    }

    /// The requirements, sorted by key; empty for both [`Selector::everything`] and
    /// [`Selector::nothing`].
    pub fn requirements(&self) -> &[Requirement] {
        self.requirements.as_deref().unwrap_or_default()
    }

    /// The value `key` must have if the selector pins it to exactly one (`k=v`, `k==v` or
    /// `k in (v)` as the first requirement on `key`), as Kubernetes' `RequiresExactMatch`.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let requirement = self.requirements().iter().find(|r| r.key == key)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

impl std::str::FromStr for Selector {
    type Err = LabelSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl Default for Selector {
    /// [`Selector::everything`], as for an absent `?labelSelector=`.
    fn default() -> Self {
        Selector::everything()
    }
}

impl fmt::Display for Selector {
    /// Prints the canonical string form, e.g. `app=web,tier in (a,b)`; both
    /// [`Selector::everything`] and [`Selector::nothing`] print as an empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

fn check_key(key: &str) -> Result<(), LabelSelectorError> {
    let reasons = is_qualified_name(key);
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(LabelSelectorError::InvalidKey {
            key: key.to_owned(),
            reason: reasons.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn matches(selector: &str, pairs: &[(&str, &str)]) -> Result<bool, LabelSelectorError> {
        Ok(Selector::parse(selector)?.matches(&set(pairs)))
    }

    fn error_text<T>(result: Result<T, LabelSelectorError>) -> String {
        result.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn equality_and_existence() -> Result<(), LabelSelectorError> {
        assert!(matches("", &[("x", "y")])?);
        assert!(matches("x=y", &[("x", "y")])?);
        assert!(matches("x==y,z=w", &[("x", "y"), ("z", "w")])?);
        assert!(!matches("x=y,z=w", &[("x", "w"), ("z", "w")])?);
        assert!(!matches("x=z", &[])?);
        assert!(matches("x", &[("x", "")])?);
        assert!(!matches("x", &[("y", "z")])?);
        assert!(matches("!x", &[("y", "z")])?);
        assert!(!matches("!x", &[("x", "z")])?);
        assert!(matches("x=", &[("x", "")])?);
        assert!(!matches("x=", &[])?);
        Ok(())
    }

    #[test]
    fn negative_operators_match_objects_without_the_key() -> Result<(), LabelSelectorError> {
        assert!(matches("x!=y", &[])?);
        assert!(matches("x notin (a,b)", &[])?);
        assert!(matches("x!=y", &[("x", "z")])?);
        assert!(!matches("x!=y", &[("x", "y")])?);
        assert!(!matches("x notin (a,b)", &[("x", "b")])?);
        assert!(matches("x notin (a,b)", &[("x", "c")])?);
        Ok(())
    }

    #[test]
    fn set_membership() -> Result<(), LabelSelectorError> {
        assert!(matches("tier in (web, db)", &[("tier", "db")])?);
        assert!(!matches("tier in (web,db)", &[("tier", "cache")])?);
        assert!(!matches("tier in (web,db)", &[])?);
        assert!(matches("tier in (web,)", &[("tier", "")])?);
        assert!(matches("in in (in)", &[("in", "in")])?);
        assert!(matches("notin=in", &[("notin", "in")])?);
        Ok(())
    }

    #[test]
    fn integer_comparisons() -> Result<(), LabelSelectorError> {
        assert!(matches("x>1", &[("x", "2")])?);
        assert!(!matches("x>1", &[("x", "1")])?);
        assert!(matches("x<1", &[("x", "0")])?);
        assert!(!matches("x<1", &[("x", "abc")])?);
        assert!(!matches("x>1", &[])?);
        assert!(matches!(
            Selector::parse("x<a"),
            Err(LabelSelectorError::InvalidValue { .. })
        ));
        assert!(matches!(
            Selector::parse("x>99999999999999999999"),
            Err(LabelSelectorError::InvalidValue { .. })
        ));
        Ok(())
    }

    #[test]
    fn display_is_canonical() -> Result<(), LabelSelectorError> {
        let cases = [
            ("app=web, tier in (b,a)", "app=web,tier in (a,b)"),
            ("z,!y,x notin (c, a, a)", "x notin (a,c),!y,z"),
            ("x==a,x!=b", "x==a,x!=b"),
            ("x=,z= ", "x=,z="),
            ("x>1,z<5", "x>1,z<5"),
            ("x in ()", "x in ()"),
            ("  ", ""),
        ];
        for (input, printed) in cases {
            assert_eq!(Selector::parse(input)?.to_string(), printed, "{input}");
            assert_eq!(Selector::parse(printed)?.to_string(), printed);
        }
        assert_eq!(
            Selector::parse("x=a,a=x")?.to_string(),
            Selector::parse("a=x,x=a")?.to_string()
        );
        Ok(())
    }

    #[test]
    fn everything_and_nothing() -> Result<(), LabelSelectorError> {
        let labels = set(&[("a", "b")]);
        assert!(Selector::everything().matches(&labels));
        assert!(Selector::everything().is_empty());
        assert!(Selector::parse("")?.is_empty());
        assert!(!Selector::nothing().matches(&labels));
        assert!(!Selector::nothing().matches(&BTreeMap::new()));
        assert!(!Selector::nothing().is_empty());
        assert!(Selector::nothing().matches_nothing());
        assert!(!Selector::everything().matches_nothing());
        assert_eq!(Selector::nothing().to_string(), "");
        assert_eq!(Selector::default(), Selector::everything());
        Ok(())
    }

    #[test]
    fn sets_select_exactly() -> Result<(), LabelSelectorError> {
        let selector = Selector::from_set(&set(&[("app", "web"), ("tier", "db")]))?;
        assert_eq!(selector.to_string(), "app=web,tier=db");
        assert!(selector.matches(&set(&[("app", "web"), ("tier", "db"), ("x", "y")])));
        assert!(!selector.matches(&set(&[("app", "web")])));
        assert!(Selector::from_set(&BTreeMap::new())?.is_empty());
        assert!(Selector::from_set(&set(&[("bad key", "v")])).is_err());
        Ok(())
    }

    #[test]
    fn matches_json_objects() -> Result<(), LabelSelectorError> {
        let selector = Selector::parse("app=web,!canary")?;
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web", "n": 1}}});
        assert!(selector.matches_object(&pod));
        assert!(!Selector::parse("n")?.matches_object(&pod));
        assert!(!selector.matches_object(&json!({"metadata": {"name": "p"}})));
        assert!(Selector::parse("!app")?.matches_object(&json!({})));
        assert!(Selector::parse("")?.matches_object(&json!(null)));
        assert!(!selector.matches_object(&json!({"metadata": {"labels": "app=web"}})));
        Ok(())
    }

    #[test]
    fn exact_match_introspection() -> Result<(), LabelSelectorError> {
        let selector = Selector::parse("app=web,tier in (db),env in (a,b),x!=y")?;
        assert_eq!(selector.requires_exact_match("app"), Some("web"));
        assert_eq!(selector.requires_exact_match("tier"), Some("db"));
        assert_eq!(selector.requires_exact_match("env"), None);
        assert_eq!(selector.requires_exact_match("x"), None);
        assert_eq!(selector.requires_exact_match("missing"), None);
        Ok(())
    }

    #[test]
    fn requirement_constructor_checks_value_counts() {
        let one = || vec!["a".to_owned()];
        let two = || vec!["a".to_owned(), "b".to_owned()];
        assert!(Requirement::new("k", Operator::Equals, vec![]).is_err());
        assert!(Requirement::new("k", Operator::NotEquals, two()).is_err());
        assert!(Requirement::new("k", Operator::Exists, one()).is_err());
        assert!(Requirement::new("k", Operator::GreaterThan, vec![]).is_err());
        assert!(Requirement::new("k", Operator::NotIn, two()).is_ok());
        assert!(Requirement::new("k/x/y", Operator::Exists, vec![]).is_err());
    }

    #[test]
    fn errors_name_the_input() {
        assert_eq!(
            error_text(Selector::parse("Bad Key=x")),
            "unable to parse label selector \"Bad Key=x\": found \"Key\", expected: in, notin, =, ==, !=, gt, lt"
        );
        assert!(error_text(Selector::parse("-x=y"))
            .starts_with("invalid label selector key \"-x\": name part must consist of"));
        assert!(error_text(Selector::parse("x=-y"))
            .starts_with("invalid value \"-y\" for label selector key \"x\": a valid label"));
        assert_eq!(
            error_text(Selector::parse("x in ()").and_then(|_| Requirement::new("x", Operator::In, vec![]))),
            "invalid label selector requirement on \"x\" with operator 'in': for 'in', 'notin' operators, values set can't be empty"
        );
    }
}
