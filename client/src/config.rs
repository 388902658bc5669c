//! Where the master is: `--master`, else `DFS_MASTER`, else the `master` key
//! of the config file (`$DFS_CONFIG`, else `$HOME/.config/dfs/config.toml`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use dfs_engine::identity::Identity;
use dfs_engine::{Error, Result};

/// The config file below the home directory when `DFS_CONFIG` is not set.
pub const CONFIG_FILE_IN_HOME: &str = ".config/dfs/config.toml";

/// Largest config file we read; it holds a few keys.
const CONFIG_FILE_BYTES_MAX: u64 = 64 * 1024;

const NO_MASTER_MESSAGE: &str =
    "no master address: use --master, DFS_MASTER or master = \"host:port\" in ~/.config/dfs/config.toml";

/// What the config file may say. Unknown keys are ignored so that one file
/// can serve newer and older clients.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    master: Option<String>,
}

/// The inputs of the lookup, separated from the process environment so the
/// precedence can be tested.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// `--master`.
    pub flag: Option<String>,
    /// `DFS_MASTER`.
    pub environment: Option<String>,
    /// `DFS_CONFIG`: an explicit config file, which must then be readable.
    pub config_file: Option<PathBuf>,
    /// `HOME`, for the default config file, which may be absent.
    pub home: Option<PathBuf>,
}

impl Sources {
    /// The sources of this process: the flag plus its environment.
    pub fn from_process(flag: Option<&str>) -> Sources {
        let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        Sources {
            flag: flag.map(str::to_string),
            environment: non_empty("DFS_MASTER").map(|value| value.to_string_lossy().into_owned()),
            config_file: non_empty("DFS_CONFIG").map(PathBuf::from),
            home: non_empty("HOME").map(PathBuf::from),
        }
    }
}

/// The master address for this process, given the `--master` flag if any.
pub fn master_address(flag: Option<&str>) -> Result<String> {
    resolve(&Sources::from_process(flag))
}

/// Applies the precedence: flag, environment, explicit config file, default
/// config file.
pub fn resolve(sources: &Sources) -> Result<String> {
    if let Some(address) = sources.flag.as_deref().filter(|a| !a.is_empty()) {
        return Ok(address.to_string());
    }
    if let Some(address) = sources.environment.as_deref() {
        return Ok(address.to_string());
    }
    let from_file = match (&sources.config_file, &sources.home) {
        (Some(path), _) => read_config(path, true)?,
        (None, Some(home)) => read_config(&home.join(CONFIG_FILE_IN_HOME), false)?,
        (None, None) => None,
    };
    from_file.ok_or_else(|| Error::Invalid(NO_MASTER_MESSAGE.into()))
}

/// The master address a config file names. A missing file is an error only
/// when the user named it explicitly.
fn read_config(path: &Path, required: bool) -> Result<Option<String>> {
    let text = match read_bounded(path) {
        Ok(text) => text,
        Err(error) if !required && error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(Error::io(
                format!("read config file {}", path.display()),
                error,
            ))
        }
    };
    let config: ConfigFile = toml::from_str(&text).map_err(|error| {
        Error::Invalid(format!(
            "{}: invalid config file: {}",
            path.display(),
            error.message()
        ))
    })?;
    Ok(config.master.filter(|address| !address.is_empty()))
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(CONFIG_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(std::io::Error::other(format!(
            "larger than {CONFIG_FILE_BYTES_MAX} bytes"
        )));
    }
    Ok(text)
}

/// The identity file below the home directory when `DFS_IDENTITY` is not
/// set.
pub const IDENTITY_FILE_IN_HOME: &str = ".config/dfs/identity";
/// A trusted host's identity (`dfs admin host add`), root's only.
pub const HOST_IDENTITY_FILE: &str = "/etc/dfs/host.identity";

/// Where this process's identity comes from, separated from the process
/// environment so the precedence can be tested.
#[derive(Clone, Debug, Default)]
pub struct IdentitySources {
    /// `DFS_IDENTITY`: a file that must then load, or `none`.
    pub explicit: Option<PathBuf>,
    /// `HOME`, for the user's identity, which may be absent.
    pub home: Option<PathBuf>,
    /// The host's identity file, used when present and readable.
    pub host_file: Option<PathBuf>,
}

impl IdentitySources {
    pub fn from_process() -> IdentitySources {
        let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        IdentitySources {
            explicit: non_empty("DFS_IDENTITY").map(PathBuf::from),
            home: non_empty("HOME").map(PathBuf::from),
            host_file: Some(PathBuf::from(HOST_IDENTITY_FILE)),
        }
    }
}

/// The identity this process proves to a keyed master: `DFS_IDENTITY`
/// (`none`: no identity), else the user's `~/.config/dfs/identity`, else
/// the host's `/etc/dfs/host.identity` when this process may read it, else
/// none. A file that is there but unusable (readable by others, damaged)
/// is an error naming it.
pub fn identity(sources: &IdentitySources) -> Result<Option<Identity>> {
    if let Some(path) = &sources.explicit {
        if path.as_os_str() == "none" {
            return Ok(None);
        }
        return Identity::load(path).map(Some);
    }
    let candidates = sources
        .home
        .iter()
        .map(|home| home.join(IDENTITY_FILE_IN_HOME))
        .chain(sources.host_file.iter().cloned());
    for path in candidates {
        match std::fs::File::open(&path) {
            Ok(_) => return Identity::load(&path).map(Some),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) => {}
            Err(error) => {
                return Err(Error::io(
                    format!("read the identity file {}", path.display()),
                    error,
                ))
            }
        }
    }
    Ok(None)
}

/// `identity` of this process's environment.
pub fn identity_from_environment() -> Result<Option<Identity>> {
    identity(&IdentitySources::from_process())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        flag: Option<&'static str>,
        environment: Option<&'static str>,
        explicit_file: Option<&'static str>,
        home_file: Option<&'static str>,
        expected: Result<&'static str, &'static str>,
    }

    fn check(case: Case) {
        let directory = tempfile::tempdir().expect("temp dir");
        let home = directory.path().join("home");
        std::fs::create_dir_all(home.join(".config/dfs")).expect("mkdir");
        if let Some(text) = case.home_file {
            std::fs::write(home.join(CONFIG_FILE_IN_HOME), text).expect("write");
        }
        let explicit = directory.path().join("explicit.toml");
        let config_file = case.explicit_file.map(|text| {
            if text != "<missing>" {
                std::fs::write(&explicit, text).expect("write");
            }
            explicit.clone()
        });
        let sources = Sources {
            flag: case.flag.map(str::to_string),
            environment: case.environment.map(str::to_string),
            config_file,
            home: Some(home),
        };
        match (resolve(&sources), case.expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(error), Err(want)) => {
                assert!(error.to_string().contains(want), "{error} lacks {want}")
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    const NONE: Case = Case {
        flag: None,
        environment: None,
        explicit_file: None,
        home_file: None,
        expected: Err("no master address: use --master, DFS_MASTER or master = \"host:port\" in ~/.config/dfs/config.toml"),
    };

    #[test]
    fn precedence_is_flag_environment_explicit_file_home_file() {
        let home = Some("master = \"home:1\"\n");
        let explicit = Some("master = \"explicit:2\"\n");
        check(Case {
            flag: Some("flag:3"),
            environment: Some("env:4"),
            explicit_file: explicit,
            home_file: home,
            expected: Ok("flag:3"),
        });
        check(Case {
            environment: Some("env:4"),
            explicit_file: explicit,
            home_file: home,
            expected: Ok("env:4"),
            ..NONE
        });
        check(Case {
            explicit_file: explicit,
            home_file: home,
            expected: Ok("explicit:2"),
            ..NONE
        });
        check(Case {
            home_file: home,
            expected: Ok("home:1"),
            ..NONE
        });
    }

    #[test]
    fn missing_or_unusable_configuration_is_a_clear_error() {
        check(NONE);
        // A config file without the key, or with other keys only.
        check(Case {
            home_file: Some("other = 1\n"),
            ..NONE
        });
        check(Case {
            home_file: Some("master = \"\"\n"),
            ..NONE
        });
        check(Case {
            home_file: Some("master = [\n"),
            expected: Err("invalid config file"),
            ..NONE
        });
        check(Case {
            home_file: Some("master = 7\n"),
            expected: Err("invalid config file"),
            ..NONE
        });
        check(Case {
            explicit_file: Some("<missing>"),
            expected: Err("read config file"),
            ..NONE
        });
        // The explicit file wins even when it lacks the key.
        check(Case {
            explicit_file: Some(""),
            home_file: Some("master = \"home:1\"\n"),
            ..NONE
        });
    }

    #[test]
    fn the_identity_comes_from_dfs_identity_then_home_then_the_host() {
        use dfs_engine::auth::ClusterKey;
        use dfs_engine::msg::ClientPrincipal;
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().expect("temp dir");
        let cluster = ClusterKey::generate().expect("key");
        let write = |path: &Path, principal: ClientPrincipal| {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            Identity::issue(&cluster, principal)
                .expect("issue")
                .save(path)
                .expect("save");
        };
        let home = directory.path().join("home");
        let host_file = directory.path().join("host.identity");
        let explicit = directory.path().join("explicit.identity");
        let user = |name: &str| ClientPrincipal::User {
            name: name.into(),
            groups: Vec::new(),
            issued_s: 0,
        };
        write(&home.join(IDENTITY_FILE_IN_HOME), user("ann"));
        write(
            &host_file,
            ClientPrincipal::Host {
                name: "ws".into(),
                issued_s: 0,
            },
        );
        write(&explicit, user("bob"));
        let found = |explicit: Option<&Path>, home: Option<&Path>| {
            identity(&IdentitySources {
                explicit: explicit.map(Path::to_path_buf),
                home: home.map(Path::to_path_buf),
                host_file: Some(host_file.clone()),
            })
            .map(|found| found.map(|identity| identity.principal().clone()))
        };
        assert_eq!(
            found(Some(&explicit), Some(&home)).expect("explicit"),
            Some(user("bob"))
        );
        assert_eq!(
            found(Some(Path::new("none")), Some(&home)).expect("none"),
            None
        );
        assert_eq!(found(None, Some(&home)).expect("home"), Some(user("ann")));
        assert!(matches!(
            found(None, Some(directory.path())).expect("host"),
            Some(ClientPrincipal::Host { .. })
        ));
        // A named file must load; a readable one is refused.
        found(Some(&directory.path().join("missing")), None).expect_err("missing");
        std::fs::set_permissions(&explicit, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = found(Some(&explicit), None).expect_err("readable by others");
        assert!(error.to_string().contains("chmod 600"), "{error}");
    }
}
