//! Rebuild when the embedded default policies change (`include_dir!` does not
//! tell Cargo which files it read).
fn main() {
    println!("cargo:rerun-if-changed=policies");
}
