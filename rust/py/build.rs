//! Copies the repository's `triton_kernels/*.py` into `$OUT_DIR/triton_kernels`, from where
//! maturin packs them into the wheel as `tokensieve/triton_kernels` (see pyproject.toml). A
//! top-level `triton_kernels` module would collide with the package of that name.

use std::path::{Path, PathBuf};

fn copy_python_files(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let target = to.join(path.file_name().expect("directory entries have names"));
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "__pycache__") {
                copy_python_files(&path, &target)?;
            }
        } else if path.extension().is_some_and(|e| e == "py") {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let kernels = manifest_dir.join("../../triton_kernels");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed={}", kernels.display());
    let target = out_dir.join("triton_kernels");
    if target.exists() {
        std::fs::remove_dir_all(&target).expect("clearing the previous copy of triton_kernels");
    }
    copy_python_files(&kernels, &target).expect("copying triton_kernels into OUT_DIR");
}
