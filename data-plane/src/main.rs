//! The `switchyard-data-plane` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    switchyard_data_plane::cli_main()
}
