//! The `ztwim-hub` binary: everything happens in [`ztwim_hub::run`].
fn main() -> std::process::ExitCode {
    ztwim_hub::run(std::env::args_os())
}
