//! The `dfs` and `dfs-cp` commands, built on the `dfs_client` library:
//! argument parsing and one function per subcommand (`cli`), `dfs local`
//! (`local`), the text `dfs stat` and `dfs admin report` print (`format`),
//! and the bulk copier behind `dfs-cp` and `dfs cp` (`cp`). Everything but
//! the entry points lives here so that tests can drive it.

pub mod cli;
pub mod cp;
pub mod format;
pub mod issue;
pub mod local;
