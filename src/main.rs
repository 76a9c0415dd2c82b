//! The standalone binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    switchyard_standalone::cli_main()
}
