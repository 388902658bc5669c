//! The `dfs` command; everything but the entry point is in `dfs_client::cli`
//! so that tests can drive it.

fn main() -> std::process::ExitCode {
    dfs_client::cli::main()
}
