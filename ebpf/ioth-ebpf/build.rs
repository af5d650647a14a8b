//! Rebuild the eBPF object when bpf-linker changes (a new LLVM means new code).
fn main() {
    let linker =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/bpf-linker");
    let linker = if linker.exists() {
        linker
    } else {
        match which::which("bpf-linker") {
            Ok(path) => path,
            Err(_) => return,
        }
    };
    println!("cargo:rerun-if-changed={}", linker.display());
}
