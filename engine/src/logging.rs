//! The daemons' logs: one line per event on stderr, human-readable text by
//! default or one JSON object per line (`--log-format json`) for log
//! collectors, filtered by `RUST_LOG` in its common form (`info`,
//! `warn,dfs_master=debug`: a default level and levels per module), `info`
//! when it is not set.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable holding the filter.
pub const FILTER_VARIABLE: &str = "RUST_LOG";
/// The filter when `RUST_LOG` is not set.
pub const FILTER_DEFAULT: &str = "info";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-07T16:00:00.000000Z  INFO dfs_master::service: message key=value`.
    #[default]
    Text,
    /// `{"timestamp":...,"level":"INFO","fields":{"message":...},"target":...}`.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?}: a log format is text or json")),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Parses a `RUST_LOG` value; the error names the variable and the text.
pub fn parse_filter(text: &str) -> Result<Targets, String> {
    let text = text.trim();
    let text = if text.is_empty() {
        FILTER_DEFAULT
    } else {
        text
    };
    text.parse::<Targets>().map_err(|error| {
        format!("{FILTER_VARIABLE}={text:?}: {error} (e.g. info, or warn,dfs_master=debug)")
    })
}

/// Installs the process's log subscriber: `format`, filtered by `RUST_LOG`.
pub fn init(format: LogFormat) -> Result<(), String> {
    let filter = parse_filter(&std::env::var(FILTER_VARIABLE).unwrap_or_default())?;
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    installed.map_err(|error| format!("install the log subscriber: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_filters_parse_and_bad_ones_are_named() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("xml"
            .parse::<LogFormat>()
            .expect_err("xml")
            .contains("text or json"));
        for good in [
            "",
            "info",
            "warn,dfs_master=debug",
            "dfs_minion::scrub=trace",
        ] {
            parse_filter(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let error = parse_filter("dfs_master=loud").expect_err("a bad level");
        assert!(
            error.contains("RUST_LOG") && error.contains("loud"),
            "{error}"
        );
    }
}
