//! Field selectors (`?fieldSelector=`) with the semantics of Kubernetes'
//! `k8s.io/apimachinery/pkg/fields`.
//!
//! A selector is a comma-separated AND of `field=value`, `field==value` and `field!=value`
//! terms. In values, `\,`, `\=` and `\\` stand for `,`, `=` and `\`; any other backslash and
//! any bare `,` or `=` is an error. Field names are taken verbatim (no whitespace trimming, as in
//! Kubernetes): checking them against the fields a resource supports is the caller's job.

use std::fmt;

/// A failure to parse a field selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term has no `=`, `==` or `!=`.
    #[error("invalid field selector {selector:?}: can't understand {term:?}; expected <field>=<value>, <field>==<value> or <field>!=<value>")]
    MissingOperator {
        /// The whole selector.
        selector: String,
        /// The offending term.
        term: String,
    },
    /// A term has an operator but nothing before it.
    #[error("invalid field selector {selector:?}: term {term:?} has no field name")]
    EmptyField {
        /// The whole selector.
        selector: String,
        /// The offending term.
        term: String,
    },
    /// A value contains a backslash not followed by `\`, `,` or `=`, or ends with one.
    #[error("invalid field selector {selector:?}: invalid escape sequence {sequence:?} in value; only \\\\, \\, and \\= are allowed")]
    InvalidEscape {
        /// The whole selector.
        selector: String,
        /// The escape sequence as written.
        sequence: String,
    },
    /// A value contains a bare `,` or `=` (only possible after the operator, e.g. `a=b=c`).
    #[error("invalid field selector {selector:?}: unescaped {character:?} in value; write it as \\{character}")]
    UnescapedCharacter {
        /// The whole selector.
        selector: String,
        /// The character that must be escaped.
        character: char,
    },
}

/// How a [`FieldRequirement`] compares a field with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `=` or `==`: the field equals the value.
    Equals,
    /// `!=`: the field differs from the value.
    NotEquals,
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field path, e.g. `metadata.name` or `spec.nodeName`.
    pub field: String,
    /// The comparison.
    pub operator: FieldOperator,
    /// The value, unescaped.
    pub value: String,
}

impl FieldRequirement {
    /// Whether `actual` (the object's value, "" when the field is missing) satisfies the term.
    pub fn matches(&self, actual: &str) -> bool {
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    /// Prints the term with its value escaped; `==` prints as `=`, as in Kubernetes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A parsed field selector: the AND of its requirements. The default selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses the `?fieldSelector=` syntax. An empty string (or only commas) selects
    /// everything. Terms are ordered by their text, as Kubernetes does, so that
    /// `b=1,a=2` and `a=2,b=1` give equal selectors.
    ///
    /// # Errors
    ///
    /// A [`FieldSelectorError`] naming the first malformed term or value.
    pub fn parse(selector: &str) -> Result<Self, FieldSelectorError> {
        let mut terms = split_terms(selector);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let Some((field, operator, raw_value)) = split_term(term) else {
                return Err(FieldSelectorError::MissingOperator {
                    selector: selector.to_owned(),
                    term: term.to_owned(),
                });
            };
            if field.is_empty() {
                return Err(FieldSelectorError::EmptyField {
                    selector: selector.to_owned(),
                    term: term.to_owned(),
                });
            }
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                operator,
                value: unescape_value(selector, raw_value)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The requirements, ordered by their text in the selector.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether the selector restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object matches; `get` returns the object's value for a field path such as
    /// `metadata.name`, or `None` when it lacks the field, which then compares as "".
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(get(&r.field).as_deref().unwrap_or_default()))
    }

    /// The value `field` must equal, if some `=`/`==` term pins it (the first such term), as
    /// Kubernetes' `RequiresExactMatch`.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// The name if the selector is exactly `metadata.name=NAME` (or `==`), which is how
    /// kubectl watches a single object.
    pub fn single_name(&self) -> Option<&str> {
        match self.requirements.as_slice() {
            [only] if only.field == "metadata.name" && only.operator == FieldOperator::Equals => {
                Some(&only.value)
            }
            _ => None,
        }
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = FieldSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

impl fmt::Display for FieldSelector {
    /// Prints the canonical form, terms joined by ',' with their values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` in a literal value so that it can be used in a field selector.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits on commas that are not escaped; escapes stay in the terms for `unescape_value`.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at the first operator; field names have no escapes, so the earliest
/// `!=`, `==` or `=` wins, `==` being tried before `=`.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ]
        .into_iter()
        .find(|(op, _)| rest.starts_with(op))
        .map(|(op, operator)| (&term[..i], operator, &rest[op.len()..]))
    })
}

fn unescape_value(selector: &str, raw: &str) -> Result<String, FieldSelectorError> {
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => value.push(e),
                other => {
                    return Err(FieldSelectorError::InvalidEscape {
                        selector: selector.to_owned(),
                        sequence: other.map_or_else(|| "\\".to_owned(), |e| format!("\\{e}")),
                    })
                }
            },
            ',' | '=' => {
                return Err(FieldSelectorError::UnescapedCharacter {
                    selector: selector.to_owned(),
                    character: c,
                })
            }
            c => value.push(c),
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn object(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn matches(selector: &str, pairs: &[(&str, &str)]) -> Result<bool, FieldSelectorError> {
        let fields = object(pairs);
        Ok(FieldSelector::parse(selector)?.matches(|f| fields.get(f).cloned()))
    }

    fn req(field: &str, operator: FieldOperator, value: &str) -> FieldRequirement {
        FieldRequirement {
            field: field.to_owned(),
            operator,
            value: value.to_owned(),
        }
    }

    #[test]
    fn parses_all_operators() -> Result<(), FieldSelectorError> {
        let selector =
            FieldSelector::parse("status.phase!=Failed,spec.nodeName==n1,metadata.name=p")?;
        assert_eq!(
            selector.requirements(),
            [
                req("metadata.name", FieldOperator::Equals, "p"),
                req("spec.nodeName", FieldOperator::Equals, "n1"),
                req("status.phase", FieldOperator::NotEquals, "Failed"),
            ]
        );
        assert_eq!(
            selector.to_string(),
            "metadata.name=p,spec.nodeName=n1,status.phase!=Failed"
        );
        Ok(())
    }

    #[test]
    fn term_order_does_not_matter() -> Result<(), FieldSelectorError> {
        let a = FieldSelector::parse("status.phase!=Succeeded,status.phase!=Failed")?;
        let b = FieldSelector::parse("status.phase!=Failed,status.phase!=Succeeded")?;
        assert_eq!(a, b);
        Ok(())
    }

    #[test]
    fn matching_treats_missing_fields_as_empty() -> Result<(), FieldSelectorError> {
        let pod = [("metadata.name", "web"), ("status.phase", "Running")];
        assert!(matches("metadata.name=web", &pod)?);
        assert!(!matches("metadata.name=db", &pod)?);
        assert!(matches(
            "status.phase!=Succeeded,status.phase!=Failed",
            &pod
        )?);
        assert!(!matches("status.phase!=Running", &pod)?);
        assert!(matches("spec.nodeName=", &pod)?);
        assert!(!matches("spec.nodeName!=", &pod)?);
        assert!(matches("spec.nodeName!=n1", &pod)?);
        assert!(matches("", &pod)?);
        Ok(())
    }

    #[test]
    fn empty_terms_select_everything() -> Result<(), FieldSelectorError> {
        assert!(FieldSelector::parse("")?.is_empty());
        assert!(FieldSelector::parse(",,")?.is_empty());
        assert_eq!(FieldSelector::parse(",a=b,")?.requirements().len(), 1);
        assert!(FieldSelector::everything().matches(|_| None));
        assert_eq!(FieldSelector::default().to_string(), "");
        Ok(())
    }

    #[test]
    fn escapes_round_trip() -> Result<(), FieldSelectorError> {
        let selector = FieldSelector::parse(r"metadata.name=a\,b\=c\\d")?;
        assert_eq!(selector.single_name(), Some(r"a,b=c\d"));
        assert_eq!(selector.to_string(), r"metadata.name=a\,b\=c\\d");
        assert_eq!(FieldSelector::parse(&selector.to_string())?, selector);
        assert_eq!(escape_value("x,y=z\\"), r"x\,y\=z\\");
        let multi = FieldSelector::parse(r"a=1\,2,b=3")?;
        assert_eq!(multi.requirements()[0].value, "1,2");
        assert_eq!(multi.requirements()[1].value, "3");
        Ok(())
    }

    #[test]
    fn whitespace_is_kept_verbatim() -> Result<(), FieldSelectorError> {
        let selector = FieldSelector::parse("metadata.name = web")?;
        assert_eq!(
            selector.requirements(),
            [req("metadata.name ", FieldOperator::Equals, " web")]
        );
        assert_eq!(selector.single_name(), None);
        Ok(())
    }

    #[test]
    fn single_name_only_for_exactly_one_name_term() -> Result<(), FieldSelectorError> {
        assert_eq!(
            FieldSelector::parse("metadata.name=web")?.single_name(),
            Some("web")
        );
        assert_eq!(
            FieldSelector::parse("metadata.name==web")?.single_name(),
            Some("web")
        );
        assert_eq!(
            FieldSelector::parse("metadata.name!=web")?.single_name(),
            None
        );
        assert_eq!(
            FieldSelector::parse("metadata.name=web,metadata.namespace=default")?.single_name(),
            None
        );
        assert_eq!(
            FieldSelector::parse("spec.nodeName=web")?.single_name(),
            None
        );
        assert_eq!(FieldSelector::parse("")?.single_name(), None);
        assert_eq!(
            FieldSelector::parse("metadata.name=")?.single_name(),
            Some("")
        );
        Ok(())
    }

    #[test]
    fn exact_match_introspection() -> Result<(), FieldSelectorError> {
        let selector = FieldSelector::parse("involvedObject.name=p,involvedObject.uid!=u")?;
        assert_eq!(
            selector.requires_exact_match("involvedObject.name"),
            Some("p")
        );
        assert_eq!(selector.requires_exact_match("involvedObject.uid"), None);
        assert_eq!(selector.requires_exact_match("metadata.name"), None);
        Ok(())
    }

    #[test]
    fn rejects_malformed_selectors() {
        let err = |s: &str| FieldSelector::parse(s).err();
        assert!(
            matches!(err("metadata.name"), Some(FieldSelectorError::MissingOperator { term, .. }) if term == "metadata.name")
        );
        assert!(matches!(
            err("a=b,c"),
            Some(FieldSelectorError::MissingOperator { .. })
        ));
        assert!(matches!(
            err("=x"),
            Some(FieldSelectorError::EmptyField { .. })
        ));
        assert!(matches!(
            err("!=x"),
            Some(FieldSelectorError::EmptyField { .. })
        ));
        assert!(matches!(
            err("a=b=c"),
            Some(FieldSelectorError::UnescapedCharacter { character: '=', .. })
        ));
        assert!(matches!(
            err("a===b"),
            Some(FieldSelectorError::UnescapedCharacter { .. })
        ));
        assert!(
            matches!(err(r"a=b\n"), Some(FieldSelectorError::InvalidEscape { sequence, .. }) if sequence == r"\n")
        );
        assert!(
            matches!(err(r"a=b\"), Some(FieldSelectorError::InvalidEscape { sequence, .. }) if sequence == r"\")
        );
        assert!(
            matches!(err(r"a=\é"), Some(FieldSelectorError::InvalidEscape { sequence, .. }) if sequence == r"\é")
        );
        assert_eq!(
            err("a=b=c").map(|e| e.to_string()).unwrap_or_default(),
            "invalid field selector \"a=b=c\": unescaped '=' in value; write it as \\="
        );
    }

    #[test]
    fn survives_hostile_input() -> Result<(), FieldSelectorError> {
        let unicode = FieldSelector::parse("metadata.name=ünï\u{0}code,x\u{1F600}=\u{1F600}")?;
        assert_eq!(unicode.single_name(), None);
        assert_eq!(
            unicode.requires_exact_match("x\u{1F600}"),
            Some("\u{1F600}")
        );
        let long = format!("metadata.name={}", "n".repeat(1_000_000));
        assert_eq!(
            FieldSelector::parse(&long)?.single_name().map(str::len),
            Some(1_000_000)
        );
        let many = vec!["a=b"; 10_000].join(",");
        assert_eq!(FieldSelector::parse(&many)?.requirements().len(), 10_000);
        assert!(FieldSelector::parse(&"\\".repeat(10_001)).is_err());
        Ok(())
    }

    /// Deterministic pseudo-random strings over `alphabet` (a linear congruential generator,
    /// so failures reproduce).
    fn random_inputs(alphabet: &[&str], count: usize, max_len: usize) -> Vec<String> {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |bound: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(state >> 33).unwrap_or(0) % bound.max(1)
        };
        (0..count)
            .map(|_| {
                let len = next(max_len + 1);
                (0..len).map(|_| alphabet[next(alphabet.len())]).collect()
            })
            .collect()
    }

    #[test]
    fn random_selectors_never_panic_and_round_trip() {
        let alphabet = ["a", "b", ".", "=", "!", ",", "\\", " ", "é", "=="];
        let sorted = |s: &FieldSelector| {
            let mut r = s.requirements().to_vec();
            r.sort_by_key(|r| {
                (
                    r.field.clone(),
                    r.operator == FieldOperator::Equals,
                    r.value.clone(),
                )
            });
            r
        };
        let mut parsed = 0;
        for input in random_inputs(&alphabet, 20_000, 10) {
            let Ok(selector) = FieldSelector::parse(&input) else {
                continue;
            };
            parsed += 1;
            let printed = selector.to_string();
            let again = FieldSelector::parse(&printed);
            assert_eq!(
                again.as_ref().map(sorted),
                Ok(sorted(&selector)),
                "{input:?} printed as {printed:?}"
            );
        }
        assert!(parsed > 1_000, "only {parsed} inputs parsed");
    }
}
