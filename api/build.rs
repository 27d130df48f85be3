//! Compiles the node protocol. protox parses the .proto in pure Rust so no protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/node.proto");
    let descriptors = protox::compile(["proto/node.proto"], ["proto"])?;
    tonic_build::configure()
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
