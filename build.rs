//! Compiles `proto/coalition/v1/*.proto` with protox (pure Rust, no system `protoc`).
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/coalition/v1/statement.proto",
        "proto/coalition/v1/hub.proto",
        "proto/coalition/v1/audit.proto",
        "proto/coalition/v1/bundle.proto",
    ];
    let fds = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // `compile_fds` does not write the descriptor set; reflection needs it.
    std::fs::write(
        out_dir.join("coalition_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".coalition.v1.Envelope.payload")
        .bytes(".coalition.v1.Envelope.body")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
