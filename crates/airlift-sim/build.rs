//! Compiles ChirpStack's published `.proto` files for the ChirpStack test
//! peer.

fn main() {
    let manifest_dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    compile_chirpstack_api(&manifest_dir.join("proto/chirpstack"), &out_dir);
}

/// The ChirpStack peer decodes and encodes with ChirpStack's own published
/// `.proto` files (vendored in `proto/chirpstack`, see its SOURCE.md),
/// compiled with `protox` (pure Rust, so no `protoc` to install). The
/// HTTP integration's JSON comes from `pbjson`, as ChirpStack's own build
/// makes it: every field of `integration.*` messages emitted, defaults
/// omitted in `common.*` and `gw.*`.
fn compile_chirpstack_api(proto_dir: &std::path::Path, out_dir: &std::path::Path) {
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    let files = ["api/multicast_group.proto", "api/device.proto", "api/gateway.proto", "integration/integration.proto"];
    let descriptors = protox::compile(files, [proto_dir]).expect("ChirpStack .proto files compile");
    let descriptor_path = out_dir.join("chirpstack_descriptors.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&descriptors)).unwrap();
    prost_build::Config::new()
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types")
        // google.api annotations only decorate the services; their doc
        // comments are not Rust.
        .disable_comments(["."])
        .compile_fds(descriptors)
        .expect("prost-build generates the ChirpStack messages");
    let descriptor_set = std::fs::read(&descriptor_path).unwrap();
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_set)
        .unwrap()
        .emit_fields()
        .build(&[".integration"])
        .expect("pbjson for integration");
    pbjson_build::Builder::new().register_descriptors(&descriptor_set).unwrap().build(&[".common", ".gw"]).expect("pbjson for common and gw");
}

