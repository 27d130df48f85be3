//! The cache's index (`index.json`): which references point at which manifest, which blobs each
//! image needs, and when each image was last used, from which the eviction order follows.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::oci::Digest;

/// Format version written to `index.json`.
const VERSION: u32 = 1;

/// One cached image, keyed in [`Index`] by its manifest digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ImageEntry {
    /// The references (`host/repo:tag`, normalised) that resolved to this manifest.
    pub(super) references: BTreeSet<String>,
    /// The blobs the image needs (config first, then layers).
    pub(super) blobs: Vec<Digest>,
    /// Manifest plus blobs, in bytes.
    pub(super) size: u64,
    /// Unix time of the last pull or lookup, for people reading the index.
    pub(super) last_used: u64,
    /// Position in the order of use; eviction goes by this, since clocks can step back.
    pub(super) seq: u64,
}

/// The persisted index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Index {
    version: u32,
    /// The last sequence number handed out.
    seq: u64,
    /// Cached images by manifest digest.
    images: BTreeMap<Digest, ImageEntry>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            version: VERSION,
            seq: 0,
            images: BTreeMap::new(),
        }
    }
}

impl Index {
    /// The manifest digest `reference` resolved to when it was last pulled.
    pub(super) fn find(&self, reference: &str) -> Option<&Digest> {
        self.images
            .iter()
            .find(|(_, entry)| entry.references.contains(reference))
            .map(|(digest, _)| digest)
    }

    /// All images.
    pub(super) fn images(&self) -> impl Iterator<Item = (&Digest, &ImageEntry)> {
        self.images.iter()
    }

    /// Records that `reference` now resolves to `digest` (moving it off any other image, as a
    /// re-pushed tag does) and marks the image used.
    pub(super) fn record(
        &mut self,
        reference: &str,
        digest: &Digest,
        blobs: Vec<Digest>,
        size: u64,
        now: u64,
    ) {
        for entry in self.images.values_mut() {
            entry.references.remove(reference);
        }
        self.seq += 1;
        let seq = self.seq;
        let entry = self
            .images
            .entry(digest.clone())
            .or_insert_with(|| ImageEntry {
                references: BTreeSet::new(),
                blobs: Vec::new(),
                size: 0,
                last_used: now,
                seq,
            });
        entry.references.insert(reference.to_owned());
        entry.blobs = blobs;
        entry.size = size;
        entry.last_used = now;
        entry.seq = seq;
    }

    /// Marks an image used now.
    pub(super) fn touch(&mut self, digest: &Digest, now: u64) {
        self.seq += 1;
        if let Some(entry) = self.images.get_mut(digest) {
            entry.last_used = now;
            entry.seq = self.seq;
        }
    }

    /// Forgets an image.
    pub(super) fn remove(&mut self, digest: &Digest) -> Option<ImageEntry> {
        self.images.remove(digest)
    }

    /// Keeps only the images for which `keep` holds.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Digest, &ImageEntry) -> bool) {
        self.images.retain(|digest, entry| keep(digest, entry));
    }

    /// Images that may be evicted (those `protected` refuses), least recently used first.
    pub(super) fn eviction_order(&self, protected: impl Fn(&Digest) -> bool) -> Vec<Digest> {
        let mut candidates: Vec<(&Digest, &ImageEntry)> = self
            .images
            .iter()
            .filter(|(digest, _)| !protected(digest))
            .collect();
        candidates.sort_by_key(|(_, entry)| entry.seq);
        candidates.into_iter().map(|(d, _)| d.clone()).collect()
    }

    /// Every blob some image still needs.
    pub(super) fn referenced_blobs(&self) -> HashSet<&Digest> {
        self.images.values().flat_map(|e| e.blobs.iter()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    #[test]
    fn record_moves_tags_and_find_follows() {
        let mut index = Index::default();
        index.record("r/a:v1", &d("m1"), vec![d("c1"), d("l")], 10, 100);
        assert_eq!(index.find("r/a:v1"), Some(&d("m1")));
        index.record("r/a:v1", &d("m2"), vec![d("c2"), d("l")], 12, 101);
        assert_eq!(index.find("r/a:v1"), Some(&d("m2")));
        let (_, old) = index
            .images()
            .find(|(digest, _)| *digest == &d("m1"))
            .expect("m1 still cached");
        assert!(old.references.is_empty(), "the tag moved away");
        assert_eq!(index.find("r/a:v2"), None);
    }

    #[test]
    fn eviction_order_is_least_recently_used_first_and_skips_protected() {
        let mut index = Index::default();
        index.record("a", &d("ma"), vec![], 1, 500);
        index.record("b", &d("mb"), vec![], 1, 400);
        index.record("c", &d("mc"), vec![], 1, 300);
        // Wall clock went backwards, but order of use is what counts.
        index.touch(&d("ma"), 10);
        assert_eq!(
            index.eviction_order(|_| false),
            vec![d("mb"), d("mc"), d("ma")]
        );
        assert_eq!(
            index.eviction_order(|x| x == &d("mc")),
            vec![d("mb"), d("ma")]
        );
    }

    #[test]
    fn shared_blobs_stay_referenced_until_the_last_image_goes() {
        let mut index = Index::default();
        index.record("a", &d("ma"), vec![d("shared"), d("only-a")], 1, 1);
        index.record("b", &d("mb"), vec![d("shared")], 1, 1);
        index.remove(&d("ma"));
        let referenced = index.referenced_blobs();
        assert!(referenced.contains(&d("shared")));
        assert!(!referenced.contains(&d("only-a")));
    }

    #[test]
    fn round_trips_through_json() {
        let mut index = Index::default();
        index.record("h/r:v1", &d("m"), vec![d("c")], 3, 7);
        let json = serde_json::to_string(&index).expect("serialize");
        assert_eq!(serde_json::from_str::<Index>(&json).expect("parse"), index);
        assert!(
            serde_json::from_str::<Index>(r#"{"version":1,"seq":0,"images":{"sha256:x":{}}}"#)
                .is_err()
        );
    }
}
