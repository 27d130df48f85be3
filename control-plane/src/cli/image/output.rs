//! Rendering for `bramble image`: the inspect summary, sizes, and the terminal progress line.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use bramble_node::oci::wasm::WasmConfig;
use bramble_node::oci::{media, Descriptor, FetchedManifest, ImageKind, Manifest, Reference};
use serde_json::Value;

/// Transfers at least this large get a progress line on a terminal.
const PROGRESS_THRESHOLD: u64 = 1_000_000;

pub(super) fn write_summary(
    out: &mut dyn Write,
    reference: &Reference,
    fetched: &FetchedManifest,
    size: u64,
    config: Option<&[u8]>,
) -> std::io::Result<()> {
    writeln!(out, "Reference:  {reference}")?;
    writeln!(out, "Digest:     {}", fetched.digest)?;
    writeln!(out, "Media type: {}", fetched.media_type)?;
    writeln!(out, "Size:       {} ({size} bytes)", human_size(size))?;
    let manifest = match &fetched.manifest {
        Manifest::Index(index) => {
            writeln!(out, "Kind:       index")?;
            writeln!(out, "Manifests:")?;
            for entry in &index.manifests {
                let platform = entry
                    .platform
                    .as_ref()
                    .map_or("-".to_owned(), |p| format!("{}/{}", p.os, p.architecture));
                writeln!(
                    out,
                    "  {platform:<16} {}  {} bytes",
                    entry.digest, entry.size
                )?;
            }
            return Ok(());
        }
        Manifest::Image(manifest) => manifest,
    };
    let wasm: Option<WasmConfig> = config.and_then(|c| serde_json::from_slice(c).ok());
    match (manifest.kind(), &wasm) {
        (ImageKind::Wasm, Some(wasm)) => {
            let kind = if wasm.component.is_some() {
                "component"
            } else {
                "module"
            };
            writeln!(
                out,
                "Kind:       wasm {kind} ({}/{})",
                wasm.os, wasm.architecture
            )?;
        }
        (kind, _) => writeln!(out, "Kind:       {kind:?}")?,
    }
    if let Some(artifact_type) = &manifest.artifact_type {
        writeln!(out, "Artifact:   {artifact_type}")?;
    }
    writeln!(
        out,
        "Config:     {} {}  {} bytes",
        manifest.config.media_type, manifest.config.digest, manifest.config.size
    )?;
    writeln!(out, "Layers:")?;
    for layer in &manifest.layers {
        write_layer(out, layer)?;
    }
    if let Some(interfaces) = wasm
        .as_ref()
        .and_then(|w| w.component.as_ref().or(w.module.as_ref()))
    {
        for (title, names) in [
            ("Imports", &interfaces.imports),
            ("Exports", &interfaces.exports),
        ] {
            writeln!(out, "{title}:")?;
            if names.is_empty() {
                writeln!(out, "  (none)")?;
            }
            for name in names {
                writeln!(out, "  {name}")?;
            }
        }
    }
    Ok(())
}

fn write_layer(out: &mut dyn Write, layer: &Descriptor) -> std::io::Result<()> {
    let title = layer
        .annotations
        .get(media::ANNOTATION_TITLE)
        .map(|t| format!("  {t}"))
        .unwrap_or_default();
    writeln!(
        out,
        "  {} {}  {} bytes{title}",
        layer.media_type, layer.digest, layer.size
    )
}

pub(super) fn pretty(value: &Value) -> String {
    // Serializing a `Value` cannot fail; compact output stands in should that ever change.
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

pub(super) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = next;
    }
    if unit == "B" {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// A `label: 1.2/5.0 MB (24%)` line on stderr, redrawn in place, for transfers over
/// [`PROGRESS_THRESHOLD`] when stderr is a terminal.
pub(super) struct ProgressLine {
    label: String,
    pub(super) enabled: bool,
    last_percent: AtomicU64,
}

impl ProgressLine {
    pub(super) fn new(label: &str, total: u64, on_terminal: bool) -> Self {
        Self {
            label: label.to_owned(),
            enabled: on_terminal && total >= PROGRESS_THRESHOLD,
            last_percent: AtomicU64::new(u64::MAX),
        }
    }

    pub(super) fn line(&self, done: u64, total: u64) -> String {
        let percent = (done.saturating_mul(100)).checked_div(total).unwrap_or(100);
        format!(
            "\r{}: {:.1}/{:.1} MB ({percent}%)",
            self.label,
            done as f64 / 1e6,
            total as f64 / 1e6
        )
    }

    pub(super) fn update(&self, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        let percent = (done.saturating_mul(100)).checked_div(total).unwrap_or(100);
        if self.last_percent.swap(percent, Ordering::Relaxed) != percent {
            let mut err = std::io::stderr().lock();
            // Progress is best effort: a closed stderr must not fail the push.
            let _ = write!(err, "{}", self.line(done, total));
            let _ = err.flush();
        }
    }

    pub(super) fn finish(&self) {
        if self.enabled && self.last_percent.load(Ordering::Relaxed) != u64::MAX {
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_progress_lines() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_500), "1.5 kB");
        assert_eq!(human_size(2_500_000), "2.5 MB");
        let line = ProgressLine::new("app.wasm", 5_000_000, true);
        assert!(line.enabled);
        assert_eq!(
            line.line(1_250_000, 5_000_000),
            "\rapp.wasm: 1.2/5.0 MB (25%)"
        );
        assert_eq!(line.line(0, 0), "\rapp.wasm: 0.0/0.0 MB (100%)");
        assert!(
            !ProgressLine::new("x", 999_999, true).enabled,
            "small transfers"
        );
        assert!(
            !ProgressLine::new("x", 5_000_000, false).enabled,
            "not a terminal"
        );
    }
}
