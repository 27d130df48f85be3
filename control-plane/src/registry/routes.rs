//! Parsing of `/v2/…` request paths and query strings into validated routes.
//!
//! Repository names contain slashes, so endpoints are recognised by their trailing segments
//! (`…/manifests/<ref>`, `…/blobs/uploads/<id>`) and whatever precedes them is the name.

use std::borrow::Cow;

use uuid::Uuid;

use super::errors::RegistryError;
use super::names::{validate_name, Digest, Reference};

/// A registry endpoint with its validated path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags {
        /// Repository.
        name: String,
    },
    /// `/v2/<name>/manifests/<reference>`.
    Manifest {
        /// Repository.
        name: String,
        /// Tag or digest.
        reference: Reference,
    },
    /// `/v2/<name>/blobs/<digest>`.
    Blob {
        /// Repository.
        name: String,
        /// Blob digest.
        digest: Digest,
    },
    /// `/v2/<name>/blobs/uploads/`.
    UploadStart {
        /// Repository.
        name: String,
    },
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload {
        /// Repository.
        name: String,
        /// Session id.
        id: Uuid,
    },
    /// `/v2/<name>/referrers/<digest>`.
    Referrers {
        /// Repository.
        name: String,
        /// Subject digest.
        digest: Digest,
    },
}

impl Route {
    /// Parses a request path (without query). Paths outside the API give
    /// [`RegistryError::RouteUnknown`]; known endpoints with bad parameters give the matching
    /// validation error.
    pub fn parse(path: &str) -> Result<Self, RegistryError> {
        let unknown = || RegistryError::RouteUnknown {
            path: path.to_owned(),
        };
        let rest = match path.strip_prefix("/v2") {
            Some("" | "/") => return Ok(Self::Base),
            Some(rest) => rest.strip_prefix('/').ok_or_else(unknown)?,
            None => return Err(unknown()),
        };
        if rest == "_catalog" {
            return Ok(Self::Catalog);
        }
        let decoded: Vec<String> = rest
            .split('/')
            .map(|segment| percent_decode(segment).map(Cow::into_owned))
            .collect::<Option<_>>()
            .ok_or_else(unknown)?;
        let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let name_of = |prefix: &[&str]| -> Result<String, RegistryError> {
            let name = prefix.join("/");
            validate_name(&name)?;
            Ok(name)
        };
        match segments.as_slice() {
            [prefix @ .., "blobs", "uploads", ""] | [prefix @ .., "blobs", "uploads"]
                if !prefix.is_empty() =>
            {
                Ok(Self::UploadStart {
                    name: name_of(prefix)?,
                })
            }
            [prefix @ .., "blobs", "uploads", id] if !prefix.is_empty() => {
                let name = name_of(prefix)?;
                let id = Uuid::parse_str(id).map_err(|_| RegistryError::UploadUnknown {
                    id: (*id).to_owned(),
                })?;
                Ok(Self::Upload { name, id })
            }
            [prefix @ .., "blobs", digest] if !prefix.is_empty() => Ok(Self::Blob {
                name: name_of(prefix)?,
                digest: Digest::parse(digest)?,
            }),
            [prefix @ .., "manifests", reference] if !prefix.is_empty() => Ok(Self::Manifest {
                name: name_of(prefix)?,
                reference: Reference::parse(reference)?,
            }),
            [prefix @ .., "tags", "list"] if !prefix.is_empty() => Ok(Self::Tags {
                name: name_of(prefix)?,
            }),
            [prefix @ .., "referrers", digest] if !prefix.is_empty() => Ok(Self::Referrers {
                name: name_of(prefix)?,
                digest: Digest::parse(digest)?,
            }),
            _ => Err(unknown()),
        }
    }
}

/// Decoded query parameters, in order, repeated keys kept.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses `a=b&c=d` with percent and `+` decoding; undecodable pairs are dropped.
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let key = percent_decode(&key.replace('+', " "))?.into_owned();
                let value = percent_decode(&value.replace('+', " "))?.into_owned();
                Some((key, value))
            })
            .collect();
        Self(pairs)
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Pagination parameters `n` and `last`.
    pub fn page(&self) -> Result<Page, RegistryError> {
        let limit = self
            .get("n")
            .map(|n| {
                n.parse::<usize>().map_err(|_| RegistryError::QueryInvalid {
                    param: "n",
                    value: n.to_owned(),
                    reason: "n must be a non-negative integer",
                })
            })
            .transpose()?;
        Ok(Page {
            limit,
            last: self.get("last").map(str::to_owned),
        })
    }
}

/// A page request of a sorted listing.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Maximum entries (`n`), unlimited when absent.
    pub limit: Option<usize>,
    /// Return entries strictly after this one (`last`).
    pub last: Option<String>,
}

impl Page {
    /// Applies the page to a sorted list; returns the page and whether more entries follow.
    pub fn apply(&self, sorted: Vec<String>) -> (Vec<String>, bool) {
        let after: Vec<String> = match &self.last {
            Some(last) => sorted.into_iter().filter(|item| item > last).collect(),
            None => sorted,
        };
        match self.limit {
            Some(limit) if after.len() > limit => {
                let mut page = after;
                page.truncate(limit);
                // With n=0 the spec wants an empty list and no Link header.
                (page, limit > 0)
            }
            _ => (after, false),
        }
    }
}

/// Decodes `%XX` escapes; `None` for malformed escapes or invalid UTF-8.
pub fn percent_decode(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains('%') {
        return Some(Cow::Borrowed(text));
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let hex = bytes.get(index + 1..index + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(byte);
            index += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Encodes a query value so that it survives a round trip through [`Query::parse`].
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn paths_map_to_routes() -> anyhow::Result<()> {
        assert_eq!(Route::parse("/v2/")?, Route::Base);
        assert_eq!(Route::parse("/v2")?, Route::Base);
        assert_eq!(Route::parse("/v2/_catalog")?, Route::Catalog);
        assert_eq!(
            Route::parse("/v2/a/b/tags/list")?,
            Route::Tags { name: "a/b".into() }
        );
        assert_eq!(
            Route::parse("/v2/a/blobs/uploads/")?,
            Route::UploadStart { name: "a".into() }
        );
        let id = Uuid::new_v4();
        assert_eq!(
            Route::parse(&format!("/v2/x/y/blobs/uploads/{id}"))?,
            Route::Upload {
                name: "x/y".into(),
                id
            }
        );
        assert!(matches!(
            Route::parse(&format!("/v2/a/blobs/{}", DIGEST.replace(':', "%3A")))?,
            Route::Blob { name, .. } if name == "a"
        ));
        // A repository may itself contain a "blobs" or "manifests" component.
        assert!(matches!(
            Route::parse("/v2/blobs/manifests/manifests/v1")?,
            Route::Manifest { name, reference: Reference::Tag(tag) }
                if name == "blobs/manifests" && tag == "v1"
        ));
        assert!(matches!(
            Route::parse(&format!("/v2/r/referrers/{DIGEST}"))?,
            Route::Referrers { .. }
        ));
        Ok(())
    }

    #[test]
    fn bad_parameters_give_spec_errors() {
        assert!(matches!(
            Route::parse("/v2/UPPER/manifests/latest"),
            Err(RegistryError::NameInvalid { .. })
        ));
        assert!(matches!(
            Route::parse("/v2/a/../b/manifests/latest"),
            Err(RegistryError::NameInvalid { .. })
        ));
        assert!(matches!(
            Route::parse("/v2/a/manifests/bad%20tag"),
            Err(RegistryError::TagInvalid { .. })
        ));
        assert!(matches!(
            Route::parse("/v2/a/blobs/sha256:zz"),
            Err(RegistryError::DigestInvalid { .. })
        ));
        assert!(matches!(
            Route::parse("/v2/a/blobs/uploads/not-a-uuid"),
            Err(RegistryError::UploadUnknown { .. })
        ));
        for unknown in [
            "/v3/",
            "/v2x",
            "/v2/a",
            "/v2/manifests/x",
            "/v2/a/%zz/tags/list",
        ] {
            assert!(
                matches!(
                    Route::parse(unknown),
                    Err(RegistryError::RouteUnknown { .. })
                ),
                "{unknown}"
            );
        }
    }

    #[test]
    fn queries_decode_and_paginate() -> anyhow::Result<()> {
        let query = Query::parse(Some("digest=sha256%3Aab&tag=a&tag=b&n=2&last=x+y"));
        assert_eq!(query.get("digest"), Some("sha256:ab"));
        assert_eq!(query.all("tag").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(query.get("last"), Some("x y"));
        assert!(Query::parse(Some("n=-1")).page().is_err());
        let tags = |list: &[&str]| list.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let page = Query::parse(Some("n=2")).page()?;
        assert_eq!(
            page.apply(tags(&["a", "b", "c"])),
            (tags(&["a", "b"]), true)
        );
        let page = Query::parse(Some("n=2&last=b")).page()?;
        assert_eq!(page.apply(tags(&["a", "b", "c"])), (tags(&["c"]), false));
        let page = Query::parse(Some("n=0")).page()?;
        assert_eq!(page.apply(tags(&["a"])), (Vec::new(), false));
        assert_eq!(percent_encode("sha256:ab/c"), "sha256%3Aab%2Fc");
        Ok(())
    }
}
