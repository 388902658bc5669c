//! The `dfs` command; everything but the entry point is in `dfs_cli::cli`
//! so that tests can drive it.

fn main() -> std::process::ExitCode {
    dfs_cli::cli::main()
}
