//! Compiles `proto/` with the pure-Rust `protox`, so a fresh machine needs no `protoc`.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/licensing/v1/licensing.proto"];
    // tonic-prost-build does not announce its inputs; without this, edits to proto/ would leave the
    // generated code stale.
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Server reflection serves this descriptor set; protox does not write it by itself.
    fs::write(out.join("licensing_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .client_mod_attribute(".", "#[cfg(feature = \"client\")]")
        .server_mod_attribute(".", "#[cfg(feature = \"server\")]")
        .compile_fds(fds)?;
    Ok(())
}
