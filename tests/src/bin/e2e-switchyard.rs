//! The standalone binary (`cargo run` at the repository root), built inside
//! the test crate so end-to-end tests find it next to the other e2e
//! binaries; same entry point as the real one.
fn main() -> std::process::ExitCode {
    switchyard_standalone::cli_main()
}
