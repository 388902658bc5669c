//! The minion's command line and the configuration built from it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use dfs_engine::config_file::{self, Invocation};
use dfs_engine::limits::ADDRESS_BYTES_MAX;
use dfs_engine::logging::LogFormat;
use dfs_engine::{units, Error, Result};

/// How often a minion reports to the master when nobody says otherwise.
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(3);
/// How often every block is verified when nobody says otherwise: two weeks.
pub const SCRUB_PERIOD_DEFAULT: Duration = Duration::from_secs(14 * 24 * 3600);
/// How long a pipeline member waits for the next one to make progress when
/// nobody says otherwise.
pub const PIPELINE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// The config file read when `--config` names none (absent: built-in
/// defaults).
pub const CONFIG_FILE_DEFAULT: &str = "/etc/dfs/minion.toml";

#[derive(Debug, Parser)]
#[command(
    name = "dfs-minion",
    version,
    about = "Stores replicated blocks on spare disks for a dfs cluster."
)]
struct Arguments {
    /// The master's address, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    master: String,
    /// Data directories (one per disk), comma-separated; created when missing.
    #[arg(
        long,
        value_name = "DIR[,DIR...]",
        value_delimiter = ',',
        required = true
    )]
    data: Vec<PathBuf>,
    /// Address to serve blocks on; port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT")]
    listen: String,
    /// Address clients and other minions reach this minion at (default: the
    /// bound listen address).
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Time between heartbeats (and registration attempts), e.g. 3s, 500ms.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_interval)]
    heartbeat_interval: Duration,
    /// Cores serving data, each with its own io_uring runtime: a number, or
    /// "all" for every core this process may run on.
    #[arg(long, value_name = "N|all", default_value = "all", value_parser = parse_cores)]
    cores: Cores,
    /// Time in which every stored block is read and its checksums verified
    /// once, e.g. 14d, 12h, 10s; "off": no verification in the background
    /// (nor of blocks a reader found bad).
    #[arg(long, value_name = "DURATION|off", default_value = "14d", value_parser = parse_scrub_period)]
    scrub_period: ScrubPeriod,
    /// How long a pipeline member waits for the member after it to take
    /// data or answer before it drops it and stores the block without it
    /// (a member with k members after it waits k times this long).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_positive)]
    pipeline_timeout: Duration,
    /// How long a peer may take to send a frame of up to 64 KiB (a data
    /// chunk), from its first byte to its last (a larger frame gets this
    /// per 64 KiB); a peer slower than that loses its connection.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_positive)]
    frame_deadline: Duration,
    /// How long a connection may wait for its next request before it is
    /// closed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_positive)]
    idle_timeout: Duration,
    /// The cluster key file (`dfs admin keygen FILE`, mode 0600): this
    /// minion proves it to the master on every connection, and checks the
    /// master's proof of it. Needed when the master has `--key`.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Listen on an address other machines reach without a cluster key
    /// (anyone there may then speak for this minion's cluster).
    #[arg(long)]
    insecure: bool,
    /// Take block data only over TLS, and send it to other minions over
    /// TLS (with a certificate signed by an authority derived from the
    /// cluster key; clients learn to trust it from the master, which needs
    /// --tls-data too). Needs --key. Without it a minion with a key serves
    /// TLS and plain connections alike.
    #[arg(long)]
    tls_data: bool,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks
    /// a free port); off when not given. An address other machines reach
    /// needs --key or --insecure, as --listen does.
    #[arg(long, value_name = "HOST:PORT")]
    http: Option<String>,
    /// How log lines are written to stderr: text, or json (one object per
    /// line, for collectors). RUST_LOG filters them (default info; e.g.
    /// warn,dfs_minion::scrub=debug).
    #[arg(long, value_name = "text|json", default_value = "text")]
    log_format: LogFormat,
}

/// How many cores serve data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cores {
    /// Every core this process may run on.
    #[default]
    All,
    Count(usize),
}

impl Cores {
    /// The number of cores, at least 1.
    pub fn resolve(self) -> usize {
        match self {
            Cores::All => crate::server::available_cores(),
            Cores::Count(count) => count.max(1),
        }
    }
}

/// Most cores `--cores` may name.
const CORES_MAX: usize = 1024;

fn parse_cores(text: &str) -> Result<Cores, String> {
    if text == "all" {
        return Ok(Cores::All);
    }
    match text.parse::<usize>() {
        Ok(count) if (1..=CORES_MAX).contains(&count) => Ok(Cores::Count(count)),
        _ => Err(format!(
            "expected \"all\" or a number from 1 to {CORES_MAX}"
        )),
    }
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = units::parse_duration(text).map_err(|e| e.to_string())?;
    if interval.is_zero() {
        return Err("the heartbeat interval must be more than zero".into());
    }
    Ok(interval)
}

/// `--scrub-period`: a duration, or no scrubbing at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScrubPeriod {
    Every(Duration),
    Off,
}

fn parse_scrub_period(text: &str) -> Result<ScrubPeriod, String> {
    if text == "off" {
        return Ok(ScrubPeriod::Off);
    }
    parse_positive(text).map(ScrubPeriod::Every)
}

fn parse_positive(text: &str) -> Result<Duration, String> {
    let duration = units::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(duration)
}

/// What a minion's command line asks for.
#[derive(Debug)]
pub enum Startup {
    /// Start with this configuration (boxed: it is far larger than the
    /// text) and this many cores.
    Run(Box<Config>, Cores),
    /// `--print-config`: print this text and exit 0.
    PrintConfig(String),
}

/// Everything a minion needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub master: String,
    pub data_dirs: Vec<PathBuf>,
    pub listen: String,
    pub advertise: Option<String>,
    pub heartbeat_interval: Duration,
    pub scrub_period: ScrubPeriod,
    pub pipeline_timeout: Duration,
    pub frame_deadline: Duration,
    pub idle_timeout: Duration,
    /// The cluster key file, loaded at start.
    pub key: Option<PathBuf>,
    /// May listen where other machines reach it without a key.
    pub insecure: bool,
    /// Block data only over TLS (`--tls-data`).
    pub tls_data: bool,
    /// Where to serve `/metrics` over HTTP, if anywhere.
    pub http: Option<String>,
    /// How log lines are written.
    pub log_format: LogFormat,
}

impl Config {
    /// Parses a command line (the first item is the program name). A usage
    /// error is a `clap::Error`, which prints and exits with `exit()`.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Config::from_args_with_cores(args).map(|(config, _)| config)
    }

    /// `from_args`, with the `--cores` choice beside the configuration.
    /// The command line alone: no config file is read.
    pub fn from_args_with_cores<I, T>(args: I) -> Result<(Config, Cores), clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Arguments::try_parse_from(args).map(Config::from_arguments)
    }

    /// Parses a command line together with its config file: `--config
    /// FILE`, else `default_file` when it exists (`CONFIG_FILE_DEFAULT` for
    /// the daemon). Flags override the file's keys.
    pub fn from_command_line<I, T>(
        args: I,
        default_file: Option<&Path>,
    ) -> Result<Startup, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Ok(
            match config_file::parse::<Arguments, _, _>(default_file, args)? {
                Invocation::Run(arguments) => {
                    let (config, cores) = Config::from_arguments(arguments);
                    Startup::Run(Box::new(config), cores)
                }
                Invocation::PrintConfig(text) => Startup::PrintConfig(text),
            },
        )
    }

    fn from_arguments(arguments: Arguments) -> (Config, Cores) {
        let config = Config {
            master: arguments.master,
            data_dirs: arguments.data,
            listen: arguments.listen,
            advertise: arguments.advertise,
            heartbeat_interval: arguments.heartbeat_interval,
            scrub_period: arguments.scrub_period,
            pipeline_timeout: arguments.pipeline_timeout,
            frame_deadline: arguments.frame_deadline,
            idle_timeout: arguments.idle_timeout,
            key: arguments.key,
            insecure: arguments.insecure,
            tls_data: arguments.tls_data,
            http: arguments.http,
            log_format: arguments.log_format,
        };
        (config, arguments.cores)
    }

    /// Checks what the parser can't: no empty directory names, addresses of a
    /// sane shape.
    pub fn validate(&self) -> Result<()> {
        if self.data_dirs.is_empty() || self.data_dirs.iter().any(|d| d.as_os_str().is_empty()) {
            return Err(Error::Invalid(
                "--data: give one or more directories, comma-separated, none empty".into(),
            ));
        }
        let scrub_period = match self.scrub_period {
            ScrubPeriod::Every(period) => period,
            ScrubPeriod::Off => Duration::MAX,
        };
        for (option, duration) in [
            ("--heartbeat-interval", self.heartbeat_interval),
            ("--scrub-period", scrub_period),
            ("--pipeline-timeout", self.pipeline_timeout),
            ("--frame-deadline", self.frame_deadline),
            ("--idle-timeout", self.idle_timeout),
        ] {
            if duration.is_zero() {
                return Err(Error::Invalid(format!("{option} must be more than zero")));
            }
        }
        if self.tls_data && self.key.is_none() {
            return Err(Error::Invalid(
                "--tls-data needs --key: this minion's certificate is signed by an authority derived from the cluster key".into(),
            ));
        }
        check_address("--master", &self.master)?;
        check_address("--listen", &self.listen)?;
        if let Some(advertise) = &self.advertise {
            check_address("--advertise", advertise)?;
        }
        if let Some(http) = &self.http {
            check_address("--http", http)?;
        }
        Ok(())
    }
}

fn check_address(option: &str, address: &str) -> Result<()> {
    let well_formed = address.len() <= ADDRESS_BYTES_MAX
        && address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if well_formed {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{option}: {address:?} is not HOST:PORT"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Config, String> {
        let config = Config::from_args(line.split(' ')).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    use dfs_engine::limits::{FRAME_DEADLINE_MS_DEFAULT, MINION_IDLE_TIMEOUT_MS_DEFAULT};

    #[test]
    fn command_lines_parse() {
        let config =
            parse("dfs-minion --master m:1 --data /a,/b --listen 127.0.0.1:0").expect("minimal");
        assert_eq!(
            config,
            Config {
                master: "m:1".into(),
                data_dirs: vec![PathBuf::from("/a"), PathBuf::from("/b")],
                listen: "127.0.0.1:0".into(),
                advertise: None,
                heartbeat_interval: HEARTBEAT_INTERVAL_DEFAULT,
                scrub_period: ScrubPeriod::Every(SCRUB_PERIOD_DEFAULT),
                pipeline_timeout: PIPELINE_TIMEOUT_DEFAULT,
                frame_deadline: Duration::from_millis(FRAME_DEADLINE_MS_DEFAULT),
                idle_timeout: Duration::from_millis(MINION_IDLE_TIMEOUT_MS_DEFAULT),
                key: None,
                insecure: false,
                tls_data: false,
                http: None,
                log_format: LogFormat::Text,
            }
        );
        let config = parse(
            "dfs-minion --master m:1 --data /a --listen [::1]:4000 --advertise h:4000 \
             --heartbeat-interval 250ms --scrub-period 10s --pipeline-timeout 2s \
             --frame-deadline 1s --idle-timeout 3s --key /etc/dfs/cluster.key \
             --http 127.0.0.1:9100",
        )
        .expect("full");
        assert_eq!(config.http.as_deref(), Some("127.0.0.1:9100"));
        assert_eq!(config.advertise.as_deref(), Some("h:4000"));
        assert_eq!(config.heartbeat_interval, Duration::from_millis(250));
        assert_eq!(
            config.scrub_period,
            ScrubPeriod::Every(Duration::from_secs(10))
        );
        assert_eq!(config.pipeline_timeout, Duration::from_secs(2));
        assert_eq!(config.frame_deadline, Duration::from_secs(1));
        assert_eq!(config.idle_timeout, Duration::from_secs(3));
        assert_eq!(config.key, Some(PathBuf::from("/etc/dfs/cluster.key")));
        let config = parse("dfs-minion --master m:1 --data /a --listen h:1 --scrub-period off")
            .expect("off");
        assert_eq!(config.scrub_period, ScrubPeriod::Off);
    }

    /// The required flags, by key, for a command line that starts.
    const REQUIRED: [(&str, &str); 3] = [("master", "m:1"), ("data", "/a"), ("listen", "h:1")];

    /// A value for every config key, other than its default.
    const SAMPLES: [(&str, &str); 15] = [
        ("master", "\"m:2\""),
        ("data", "[\"/x\", \"/y\"]"),
        ("listen", "\"[::1]:0\""),
        ("advertise", "\"h:3\""),
        ("heartbeat-interval", "\"1s\""),
        ("cores", "2"),
        ("scrub-period", "\"off\""),
        ("pipeline-timeout", "\"5s\""),
        ("frame-deadline", "\"5s\""),
        ("idle-timeout", "\"5s\""),
        ("key", "\"/etc/dfs/cluster.key\""),
        ("insecure", "true"),
        ("tls-data", "true"),
        ("http", "\"127.0.0.1:9100\""),
        ("log-format", "\"json\""),
    ];

    /// A config file named minion.toml in a fresh directory.
    fn config_file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("minion.toml");
        std::fs::write(&path, text).expect("write the config file");
        let path = path.to_str().expect("UTF-8 temporary path").to_string();
        (dir, path)
    }

    /// `dfs-minion ARGS...` with no default config file.
    fn startup(args: &[&str]) -> Result<Startup, String> {
        let line = std::iter::once("dfs-minion").chain(args.iter().copied());
        Config::from_command_line(line, None).map_err(|e| e.to_string())
    }

    fn run_config(args: &[&str]) -> (Config, Cores) {
        match startup(args) {
            Ok(Startup::Run(config, cores)) => (*config, cores),
            other => panic!("{args:?} did not parse to a configuration: {other:?}"),
        }
    }

    fn printed(args: &[&str]) -> String {
        match startup(args) {
            Ok(Startup::PrintConfig(text)) => text,
            other => panic!("{args:?} printed nothing: {other:?}"),
        }
    }

    /// The required flags except the one keyed `except`.
    fn required_except(except: &str) -> Vec<String> {
        REQUIRED
            .iter()
            .filter(|(key, _)| *key != except)
            .flat_map(|(key, value)| [format!("--{key}"), value.to_string()])
            .collect()
    }

    #[test]
    fn config_print_of_the_defaults_loads_back_to_the_defaults() {
        let defaults_text = printed(&["--print-config"]);
        for line in [
            "\n# master = ...\n",
            "\n# data = ...\n",
            "\ncores = \"all\"\n",
        ] {
            assert!(
                defaults_text.contains(line),
                "{line:?} missing:\n{defaults_text}"
            );
        }
        let (_dir, path) = config_file(&defaults_text);
        let required = required_except("");
        let mut with_file = vec!["--config", path.as_str()];
        with_file.extend(required.iter().map(String::as_str));
        let flags_only: Vec<&str> = required.iter().map(String::as_str).collect();
        assert_eq!(run_config(&with_file), run_config(&flags_only));
        assert_eq!(
            printed(&["--config", &path, "--print-config"]),
            defaults_text
        );
    }

    #[test]
    fn config_has_a_key_for_every_flag() {
        use clap::CommandFactory;
        let mut command = Arguments::command();
        command.build();
        let keys: Vec<&str> = config_file::settable(&command)
            .filter_map(|arg| arg.get_long())
            .collect();
        let sampled: Vec<&str> = SAMPLES.iter().map(|(key, _)| *key).collect();
        assert_eq!(keys, sampled, "SAMPLES must list every flag, in order");
        let baseline_line = required_except("");
        let baseline_line: Vec<&str> = baseline_line.iter().map(String::as_str).collect();
        let baseline = run_config(&baseline_line);
        for (key, value) in SAMPLES {
            let (_dir, path) = config_file(&format!("{key} = {value}\n"));
            let required = required_except(key);
            let mut line = vec!["--config", path.as_str()];
            line.extend(required.iter().map(String::as_str));
            assert_ne!(
                run_config(&line),
                baseline,
                "{key} = {value} changed nothing"
            );
        }
    }

    #[test]
    fn config_file_alone_starts_and_flags_override_it() {
        let (_dir, path) = config_file(
            "master = \"m:1\"\ndata = [\"/a\", \"/b\"]\nlisten = \"h:1\"\ncores = 3\n\
             scrub-period = \"off\"\n",
        );
        let (config, cores) = run_config(&["--config", &path]);
        assert_eq!(config.data_dirs, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(cores, Cores::Count(3));
        assert_eq!(config.scrub_period, ScrubPeriod::Off);
        let (config, cores) = run_config(&[
            "--config",
            &path,
            "--data",
            "/c",
            "--data",
            "/d,/e",
            "--cores=all",
        ]);
        assert_eq!(
            config.data_dirs,
            [
                PathBuf::from("/c"),
                PathBuf::from("/d"),
                PathBuf::from("/e")
            ]
        );
        assert_eq!(cores, Cores::All);
        assert_eq!(config.master, "m:1");
    }

    #[test]
    fn config_errors_name_the_file_and_key() {
        let required = required_except("");
        for (text, expected) in [
            ("cores = 0", "minion.toml: cores: invalid value \"0\": expected \"all\""),
            (
                "scrub-period = \"never\"",
                "minion.toml: scrub-period: \"never\": invalid",
            ),
            ("datta = \"/a\"", "minion.toml: unknown key datta (did you mean data?)"),
            ("data = [1.5]", "minion.toml: data: expected an array of strings or integers, found a float in the array"),
            ("insecure = \"yes\"", "minion.toml: insecure: expected true or false, found a string"),
        ] {
            let (_dir, path) = config_file(text);
            let mut line = vec!["--config", path.as_str()];
            line.extend(required.iter().map(String::as_str));
            let error = startup(&line).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
        let error = startup(&["--config", "/nonexistent/minion.toml"]).expect_err("missing file");
        assert!(error.contains("/nonexistent/minion.toml"), "{error}");
    }

    #[test]
    fn cores_parse() {
        let cores = |extra: &str| {
            let line = format!("dfs-minion --master m:1 --data /a --listen h:1{extra}");
            Config::from_args_with_cores(line.split(' '))
                .map(|(_, cores)| cores)
                .map_err(|e| e.to_string())
        };
        assert_eq!(cores(""), Ok(Cores::All));
        assert_eq!(cores(" --cores all"), Ok(Cores::All));
        assert_eq!(cores(" --cores 2"), Ok(Cores::Count(2)));
        for bad in [" --cores 0", " --cores many", " --cores 5000"] {
            assert!(cores(bad).is_err(), "{bad}");
        }
        assert!(Cores::All.resolve() >= 1);
        assert_eq!(Cores::Count(3).resolve(), 3);
    }

    #[test]
    fn bad_command_lines_are_refused() {
        for (line, expected) in [
            ("dfs-minion --data /a --listen h:1", "--master"),
            ("dfs-minion --master m:1 --listen h:1", "--data"),
            ("dfs-minion --master m:1 --data /a", "--listen"),
            ("dfs-minion --master m:1 --data /a, --listen h:1", "--data"),
            ("dfs-minion --master m --data /a --listen h:1", "--master"),
            (
                "dfs-minion --master m:1 --data /a --listen h:99999",
                "--listen",
            ),
            (
                "dfs-minion --master m:1 --data /a --listen h:1 --advertise :1",
                "--advertise",
            ),
            (
                "dfs-minion --master m:1 --data /a --listen h:1 --http 9100",
                "--http",
            ),
            (
                "dfs-minion --master m:1 --data /a --listen h:1 --heartbeat-interval 0",
                "zero",
            ),
            (
                "dfs-minion --master m:1 --data /a --listen h:1 --heartbeat-interval 5x",
                "invalid",
            ),
            (
                "dfs-minion --master m:1 --data /a --listen h:1 --scrub-period 0",
                "more than zero",
            ),
            (
                "dfs-minion --master m:1 --data /a --listen h:1 --pipeline-timeout 1y",
                "invalid",
            ),
        ] {
            let error = parse(line).expect_err(line);
            assert!(error.contains(expected), "{line}: {error}");
        }
    }
}
