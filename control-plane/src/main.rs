//! The control-plane binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    switchyard_control_plane::cli_main()
}
