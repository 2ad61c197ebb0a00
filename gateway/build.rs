//! Builds the eBPF programs (gateway-ebpf, bpfel-unknown-none, nightly) so a plain
//! `cargo build` produces a gateway with its programs embedded.
use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "gateway-ebpf")
        .ok_or_else(|| anyhow!("gateway-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("gateway-ebpf manifest has no parent"))?
        .to_string();
    let package = Package {
        name: ebpf.name.as_str(),
        root_dir: &root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
}
