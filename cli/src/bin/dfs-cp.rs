//! `dfs-cp`: bulk copy into, out of and within the cluster; the logic is
//! `dfs_cli::cp`.

fn main() -> std::process::ExitCode {
    dfs_cli::cp::main()
}
