//! `dfs-cp`: bulk copy into, out of and within the cluster; the logic is
//! `dfs_client::cp`.

fn main() -> std::process::ExitCode {
    dfs_client::cp::main()
}
