fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=zest.proto");
    println!("cargo:rerun-if-changed=peer.proto");
    tonic_prost_build::configure().compile_protos(&["zest.proto", "peer.proto"], &["."])?;
    Ok(())
}
