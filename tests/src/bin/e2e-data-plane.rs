//! The data-plane binary, built inside the test crate so end-to-end tests
//! can find it through `CARGO_BIN_EXE_*`; same entry point as the real one.
fn main() -> std::process::ExitCode {
    switchyard_data_plane::cli_main()
}
