//! Name, label and annotation validation with the rules and the wording of Kubernetes'
//! `k8s.io/apimachinery/pkg/util/validation`.
//!
//! The `is_*` functions return the bare messages Kubernetes' functions of the same name return
//! (an empty `Vec` means valid). The `validate_*` functions return complete field errors as the
//! API server prints them inside a 422 `Invalid` Status, e.g.
//! `metadata.name: Invalid value: "Foo": a lowercase RFC 1123 subdomain must consist of ...`;
//! join them with `", "` after `<Kind> "<name>" is invalid: ` to get Kubernetes' message.
//!
//! Wording follows Kubernetes 1.32 (length errors say "characters"; newer releases say "bytes"
//! for label keys and values). Lengths are counted in bytes, as Go's `len` does.

mod meta;

pub use meta::{
    name_rule_for_kind, validate_annotations, validate_annotations_at, validate_generate_name,
    validate_labels, validate_labels_at, validate_object_name, NameRule, CRONJOB_NAME_MAX_LENGTH,
    TOTAL_ANNOTATION_SIZE_LIMIT,
};

/// Maximum length of a DNS-1123 label (and so of a namespace name).
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Maximum length of a DNS-1123 subdomain (most object names).
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Maximum length of a DNS-1035 label (Service names).
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
/// Maximum length of the name part of a qualified name (label and annotation keys).
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Maximum length of a label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Checks that `value` is a DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63).
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            // A valid subdomain that is not a valid label can only be failing on its dots.
            errs.push("must not contain dots".to_owned());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Checks that `value` is a DNS-1123 subdomain (dot-separated labels, at most 253).
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Checks that `value` is a DNS-1035 label (`[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63).
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    let starts_with_letter = value.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if !(starts_with_letter && matches_dns1123_label(value)) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Checks that `value` is a qualified name: an optional DNS-1123 subdomain prefix and '/',
/// then a name of at most 63 alphanumerics, '-', '_' or '.' that starts and ends with an
/// alphanumeric. Label keys, annotation keys and finalizers are qualified names.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let mut parts = value.split('/');
    let first = parts.next().unwrap_or_default();
    let (prefix, name) = match (parts.next(), parts.next()) {
        (None, _) => (None, first),
        (Some(name), None) => (Some(first), name),
        (Some(_), Some(_)) => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    match prefix {
        Some("") => errs.push("prefix part must be non-empty".to_owned()),
        Some(prefix) => errs.extend(
            is_dns1123_subdomain(prefix)
                .into_iter()
                .map(|msg| format!("prefix part {msg}")),
        ),
        None => {}
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Checks that `value` is a label value: empty, or at most 63 alphanumerics, '-', '_' or '.'
/// that starts and ends with an alphanumeric.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !(value.is_empty() || matches_qualified_name_part(value)) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Checks that `value` can be used as one URL path segment (not `.` or `..`, no `/` or `%`).
/// Like Kubernetes' check, this imposes neither a minimum nor a maximum length.
pub fn is_path_segment_name(value: &str) -> Vec<String> {
    if value == "." || value == ".." {
        return vec![format!("may not be '{value}'")];
    }
    is_path_segment_prefix(value)
}

/// Checks that `value` can start a path segment: it may not contain `/` or `%`.
pub fn is_path_segment_prefix(value: &str) -> Vec<String> {
    ["/", "%"]
        .iter()
        .filter(|bad| value.contains(**bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
fn matches_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alnum(first)
                && is_lower_alnum(last)
                && bytes.iter().all(|&b| is_lower_alnum(b) || b == b'-')
        }
        _ => false,
    }
}

/// `^label(\.label)*$` without a length limit.
fn matches_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(matches_dns1123_label)
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`
fn matches_qualified_name_part(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Kubernetes' `RegexError`; its examples read "'a',  or 'b'", double space included, and
/// clients that match messages rely on that.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{fmt}')",
        examples.join(" or ")
    )
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomain_message_is_kubernetes_wording() {
        assert_eq!(
            is_dns1123_subdomain("Foo"),
            vec!["a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
        );
    }

    #[test]
    fn subdomains() {
        for ok in [
            "a",
            "example.com",
            "a-b.c-d",
            "0",
            "1.2.3",
            &"a".repeat(253),
        ] {
            assert!(is_dns1123_subdomain(ok).is_empty(), "{ok} should be valid");
        }
        for bad in [
            "", "-a", "a-", "a..b", ".a", "a.", "A", "a_b", "a b", "ä", "a/b",
        ] {
            assert_eq!(
                is_dns1123_subdomain(bad).len(),
                1,
                "{bad:?} should be invalid"
            );
        }
        let long = "a".repeat(254);
        assert_eq!(
            is_dns1123_subdomain(&long),
            vec!["must be no more than 253 characters".to_owned()]
        );
    }

    #[test]
    fn labels_report_dots_separately() {
        assert!(is_dns1123_label("my-name").is_empty());
        assert!(is_dns1123_label("123-abc").is_empty());
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(
            is_dns1123_label("My-Name"),
            vec!["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
        );
        let long = "a".repeat(64);
        assert_eq!(
            is_dns1123_label(&long),
            vec!["must be no more than 63 characters"]
        );
        assert!(is_dns1123_label(&"a".repeat(63)).is_empty());
        assert_eq!(is_dns1123_label("").len(), 1);
    }

    #[test]
    fn dns1035_labels_start_with_a_letter() {
        assert!(is_dns1035_label("web").is_empty());
        assert!(is_dns1035_label("abc-123").is_empty());
        let errs = is_dns1035_label("1web");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("a DNS-1035 label must consist of"));
        assert!(errs[0].ends_with("(e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"));
        assert_eq!(is_dns1035_label("").len(), 1);
        assert_eq!(is_dns1035_label("web-").len(), 1);
        assert_eq!(is_dns1035_label(&"a".repeat(64)).len(), 1);
    }

    #[test]
    fn qualified_names() {
        for ok in [
            "app",
            "App.Name_1",
            "example.com/MyName",
            "kubernetes.io/hostname",
            "a",
        ] {
            assert!(is_qualified_name(ok).is_empty(), "{ok} should be valid");
        }
        assert_eq!(
            is_qualified_name("/name"),
            vec!["prefix part must be non-empty"]
        );
        assert_eq!(
            is_qualified_name("example.com/"),
            vec![
                "name part must be non-empty".to_owned(),
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_owned(),
            ]
        );
        let errs = is_qualified_name("Example.com/x");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("prefix part a lowercase RFC 1123 subdomain"));
        let errs = is_qualified_name("a/b/c");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("a qualified name must consist of"));
        assert!(errs[0].ends_with(
            "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ));
        assert_eq!(
            is_qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters"]
        );
        assert_eq!(is_qualified_name("-a").len(), 1);
        assert_eq!(is_qualified_name("a b").len(), 1);
        assert_eq!(is_qualified_name("ключ").len(), 1);
        assert_eq!(is_qualified_name("").len(), 2);
    }

    #[test]
    fn label_values() {
        for ok in [
            "",
            "MyValue",
            "my_value",
            "12345",
            "a.b-c_d",
            &"x".repeat(63),
        ] {
            assert!(
                is_valid_label_value(ok).is_empty(),
                "{ok:?} should be valid"
            );
        }
        assert_eq!(
            is_valid_label_value("-x"),
            vec!["a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]
        );
        assert_eq!(is_valid_label_value(&"x".repeat(64)).len(), 1);
        assert_eq!(is_valid_label_value(&"-".repeat(64)).len(), 2);
        assert_eq!(is_valid_label_value("héllo").len(), 1);
        assert_eq!(is_valid_label_value("a/b").len(), 1);
    }

    #[test]
    fn path_segments() {
        assert!(is_path_segment_name("system:controller:foo").is_empty());
        assert_eq!(is_path_segment_name("."), vec!["may not be '.'"]);
        assert_eq!(is_path_segment_name(".."), vec!["may not be '..'"]);
        assert_eq!(
            is_path_segment_name("a/b%c"),
            vec!["may not contain '/'", "may not contain '%'"]
        );
    }
}
