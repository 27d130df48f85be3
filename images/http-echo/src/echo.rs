//! What `http-echo` answers: a JSON document describing the request it got.
//!
//! ```json
//! {"pod":"echo-1","method":"POST","authority":"localhost:8080","path":"/a?b=1",
//!  "headers":{"accept":["*/*"],"x-multi":["1","2"]},
//!  "body":"hi","body_bytes":2}
//! ```
//!
//! Headers are grouped by name in order of first appearance, each with all its values, so
//! repeated headers survive. Header values and the body are decoded as UTF-8 with invalid bytes
//! replaced (U+FFFD); `body_bytes` is the exact byte count. `pod` is null when `POD_NAME` is
//! unset, `authority` when the request had none (WASI hosts move the `Host` header there).
//! Kept free of WASI calls so it is unit-tested on the host.

use std::fmt::Write as _;

/// The parts of a request that are echoed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Value of `POD_NAME`, if set.
    pub pod: Option<&'a str>,
    /// Request method, e.g. `GET`.
    pub method: &'a str,
    /// Authority (host and port) the request was sent to, if known.
    pub authority: Option<&'a str>,
    /// Path and query as the client sent them; empty if the request had none.
    pub path: &'a str,
    /// Header fields in the order received.
    pub headers: &'a [(String, Vec<u8>)],
    /// The request body.
    pub body: &'a [u8],
}

/// Renders the echo document for `request`.
pub fn render(request: &Request<'_>) -> String {
    let mut json = String::with_capacity(256 + request.body.len());
    json.push_str("{\"pod\":");
    push_optional(&mut json, request.pod);
    json.push_str(",\"method\":");
    push_string(&mut json, request.method);
    json.push_str(",\"authority\":");
    push_optional(&mut json, request.authority);
    json.push_str(",\"path\":");
    push_string(&mut json, request.path);
    json.push_str(",\"headers\":{");
    for (index, (name, values)) in group_headers(request.headers).iter().enumerate() {
        if index > 0 {
            json.push(',');
        }
        push_string(&mut json, name);
        json.push_str(":[");
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                json.push(',');
            }
            push_string(&mut json, &String::from_utf8_lossy(value));
        }
        json.push(']');
    }
    json.push_str("},\"body\":");
    push_string(&mut json, &String::from_utf8_lossy(request.body));
    // Writing to a String cannot fail.
    let _ = write!(json, ",\"body_bytes\":{}}}", request.body.len());
    json.push('\n');
    json
}

/// Renders the document sent instead of an echo when the request could not be read.
pub fn render_error(pod: Option<&str>, message: &str) -> String {
    let mut json = String::from("{\"pod\":");
    push_optional(&mut json, pod);
    json.push_str(",\"error\":");
    push_string(&mut json, message);
    json.push_str("}\n");
    json
}

/// Groups header values by name, keeping the order in which names first appeared.
fn group_headers(headers: &[(String, Vec<u8>)]) -> Vec<(&str, Vec<&[u8]>)> {
    let mut grouped: Vec<(&str, Vec<&[u8]>)> = Vec::new();
    for (name, value) in headers {
        match grouped.iter_mut().find(|(seen, _)| *seen == name.as_str()) {
            Some((_, values)) => values.push(value),
            None => grouped.push((name, vec![value])),
        }
    }
    grouped
}

/// Appends `text` as a JSON string literal, or `null`.
fn push_optional(json: &mut String, text: Option<&str>) {
    match text {
        Some(text) => push_string(json, text),
        None => json.push_str("null"),
    }
}

/// Appends `text` as a JSON string literal (RFC 8259 escaping).
fn push_string(json: &mut String, text: &str) {
    json.push('"');
    for c in text.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            '\n' => json.push_str("\\n"),
            '\r' => json.push_str("\\r"),
            '\t' => json.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(json, "\\u{:04x}", u32::from(c));
            }
            c => json.push(c),
        }
    }
    json.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &[u8]) -> (String, Vec<u8>) {
        (name.to_owned(), value.to_vec())
    }

    #[test]
    fn renders_every_part_of_the_request() {
        let headers = [
            header("host", b"localhost:8080"),
            header("x-multi", b"1"),
            header("accept", b"*/*"),
            header("x-multi", b"2"),
        ];
        let json = render(&Request {
            pod: Some("echo-1"),
            method: "POST",
            authority: Some("echo:8080"),
            path: "/a/b?c=d",
            headers: &headers,
            body: b"hello",
        });
        assert_eq!(
            json,
            "{\"pod\":\"echo-1\",\"method\":\"POST\",\"authority\":\"echo:8080\",\"path\":\"/a/b?c=d\",\
             \"headers\":{\"host\":[\"localhost:8080\"],\"x-multi\":[\"1\",\"2\"],\
             \"accept\":[\"*/*\"]},\"body\":\"hello\",\"body_bytes\":5}\n"
        );
    }

    #[test]
    fn missing_pod_and_empty_request() {
        let json = render(&Request {
            pod: None,
            method: "GET",
            authority: None,
            path: "",
            headers: &[],
            body: b"",
        });
        assert_eq!(
            json,
            "{\"pod\":null,\"method\":\"GET\",\"authority\":null,\"path\":\"\",\"headers\":{},\
             \"body\":\"\",\"body_bytes\":0}\n"
        );
    }

    #[test]
    fn hostile_strings_are_escaped() {
        let headers = [
            header("x-evil", b"\"}\\\n\x01"),
            header("x-bin", &[0xff, b'a']),
        ];
        let json = render(&Request {
            pod: Some("p\"od"),
            method: "GET",
            authority: Some("h\\"),
            path: "/\"quoted\"\t",
            headers: &headers,
            body: &[b'{', 0xc3, b'"', 0x00],
        });
        assert!(json.contains("\"pod\":\"p\\\"od\""), "{json}");
        assert!(json.contains("\"authority\":\"h\\\\\""), "{json}");
        assert!(json.contains("\"path\":\"/\\\"quoted\\\"\\t\""), "{json}");
        assert!(
            json.contains("\"x-evil\":[\"\\\"}\\\\\\n\\u0001\"]"),
            "{json}"
        );
        assert!(json.contains("\"x-bin\":[\"\u{fffd}a\"]"), "{json}");
        assert!(json.contains("\"body\":\"{\u{fffd}\\\"\\u0000\""), "{json}");
        assert!(json.contains("\"body_bytes\":4"), "{json}");
        assert_eq!(structure(&json), "{:,:,:,:,:{:[],:[]},:,:}", "{json}");
    }

    /// The document with every string literal removed, keeping only JSON punctuation; fails
    /// the test on an unterminated string or a raw control character inside one.
    fn structure(json: &str) -> String {
        let mut out = String::new();
        let mut in_string = false;
        let mut escaped = false;
        for c in json.trim_end().chars() {
            if in_string {
                assert!(u32::from(c) >= 0x20, "raw control character in {json}");
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
            } else if "{}[]:,".contains(c) {
                out.push(c);
            }
        }
        assert!(!in_string, "unterminated string in {json}");
        out
    }

    #[test]
    fn error_document() {
        assert_eq!(
            render_error(Some("p"), "body \"too\" large"),
            "{\"pod\":\"p\",\"error\":\"body \\\"too\\\" large\"}\n"
        );
        assert_eq!(render_error(None, "x"), "{\"pod\":null,\"error\":\"x\"}\n");
    }
}
