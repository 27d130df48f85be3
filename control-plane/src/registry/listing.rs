//! Content discovery: tag lists, the catalog and the referrers API.

use http::{header, Response};
use serde_json::json;

use super::errors::RegistryError;
use super::manifest::{Manifest, OCI_INDEX};
use super::names::Digest;
use super::routes::{percent_encode, Page, Query};
use super::{full_body, set_header, Body, Registry};

/// A JSON response with an RFC 5988 `Link` to the next page when there is one.
fn paged_json(value: &serde_json::Value, next: Option<String>) -> Response<Body> {
    let mut response = Response::new(full_body(value.to_string()));
    let out = response.headers_mut();
    set_header(out, header::CONTENT_TYPE, "application/json");
    if let Some(next) = next {
        set_header(out, header::LINK, &format!("<{next}>; rel=\"next\""));
    }
    response
}

/// The URL of the page after `page` ended at `last`.
fn next_url(base: &str, page: &Page, items: &[String]) -> Option<String> {
    let limit = page.limit?;
    let last = items.last()?;
    Some(format!("{base}?n={limit}&last={}", percent_encode(last)))
}

impl Registry {
    /// `GET /v2/<name>/tags/list[?n=&last=]`.
    pub(crate) async fn list_tags(
        &self,
        name: &str,
        query: &Query,
    ) -> Result<Response<Body>, RegistryError> {
        let page = query.page()?;
        if !self.storage.repo_exists(name).await? {
            return Err(RegistryError::NameUnknown {
                name: name.to_owned(),
            });
        }
        let (tags, more) = page.apply(self.storage.tags(name).await?);
        let next = more
            .then(|| next_url(&format!("/v2/{name}/tags/list"), &page, &tags))
            .flatten();
        Ok(paged_json(&json!({ "name": name, "tags": tags }), next))
    }

    /// `GET /v2/_catalog[?n=&last=]`.
    pub(crate) async fn catalog(&self, query: &Query) -> Result<Response<Body>, RegistryError> {
        let page = query.page()?;
        let (repositories, more) = page.apply(self.storage.repositories().await?);
        let next = more
            .then(|| next_url("/v2/_catalog", &page, &repositories))
            .flatten();
        Ok(paged_json(&json!({ "repositories": repositories }), next))
    }

    /// `GET /v2/<name>/referrers/<digest>[?artifactType=]`: manifests whose `subject` is
    /// `digest`. Scans the repository's manifests, which is cheap at the sizes a cluster's own
    /// registry holds and needs no index to keep consistent.
    pub(crate) async fn referrers(
        &self,
        name: &str,
        subject: &Digest,
        query: &Query,
    ) -> Result<Response<Body>, RegistryError> {
        if !self.storage.repo_exists(name).await? {
            return Err(RegistryError::NameUnknown {
                name: name.to_owned(),
            });
        }
        let filter = query.get("artifactType").filter(|t| !t.is_empty());
        let mut descriptors = Vec::new();
        for digest in self.storage.revisions(name).await? {
            let Ok(stored) = self.local_manifest(name, &digest).await else {
                continue;
            };
            // Manifests were validated on the way in; one that no longer parses is skipped.
            let Ok(manifest) = Manifest::parse(&stored.bytes, Some(&stored.media_type)) else {
                continue;
            };
            if manifest.subject.as_ref() != Some(subject) {
                continue;
            }
            if filter.is_some_and(|wanted| manifest.artifact_type.as_deref() != Some(wanted)) {
                continue;
            }
            let size = u64::try_from(stored.bytes.len()).unwrap_or(u64::MAX);
            descriptors.push(manifest.referrer_descriptor(&digest, size));
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": descriptors,
        });
        let mut response = paged_json(&index, None);
        let out = response.headers_mut();
        set_header(out, header::CONTENT_TYPE, OCI_INDEX);
        if filter.is_some() {
            set_header(out, super::OCI_FILTERS_APPLIED, "artifactType");
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_carry_the_last_item() {
        let page = Page {
            limit: Some(2),
            last: None,
        };
        let items = vec!["a".to_owned(), "b+c".to_owned()];
        assert_eq!(
            next_url("/v2/r/tags/list", &page, &items).as_deref(),
            Some("/v2/r/tags/list?n=2&last=b%2Bc")
        );
        let unlimited = Page::default();
        assert_eq!(next_url("/v2/_catalog", &unlimited, &items), None);
    }
}
