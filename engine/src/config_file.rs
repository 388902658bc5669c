//! TOML config files for the daemons, on top of their clap command lines.
//!
//! A daemon's file holds the same settings as its flags: each key is a long
//! flag exactly as spelled on the command line (`heartbeat-interval = "3s"`,
//! `data = ["/disk1/dfs", "/disk2/dfs"]`, `insecure = true`), so every flag
//! has a key by construction and a new flag needs nothing here. The file's
//! settings become arguments placed before the real ones, and clap parses
//! them as it parses flags: the same value parsers, defaults and checks. A
//! flag given on the command line wins; its key in the file is then left
//! out. `--config FILE` names the file; without it a daemon reads its
//! documented default location when that exists. `--print-config` renders
//! the effective settings (built-in defaults, then the file, then flags) as
//! commented TOML that loads back to the same settings.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::builder::ValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, Parser};

/// The flag naming the config file (and the key no file may set).
pub const CONFIG_FLAG: &str = "config";
/// The flag that prints the effective configuration and exits.
pub const PRINT_CONFIG_FLAG: &str = "print-config";
/// Largest config file read: settings for a handful of flags, with room.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;
/// Width the help comments of `--print-config` are wrapped to.
const COMMENT_WIDTH: usize = 78;
/// Largest edit distance at which an unknown key gets a suggestion.
const SUGGESTION_DISTANCE_MAX: usize = 3;

/// What a daemon's command line asks it to do.
#[derive(Debug)]
pub enum Invocation<T> {
    /// Start with these settings.
    Run(T),
    /// `--print-config`: print this text and exit 0.
    PrintConfig(String),
}

/// Parses a daemon's command line together with its config file:
/// `--config FILE` when given, else `default_file` when it exists (a missing
/// default is no error; `None` reads no file). Errors are clap errors, so a
/// daemon prints them and exits as for any usage error; those a file's
/// setting caused name the file and the key.
pub fn parse<T, I, A>(default_file: Option<&Path>, args: I) -> Result<Invocation<T>, clap::Error>
where
    T: Parser,
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let command = T::command();
    match parse_matches(command.clone(), default_file, args)? {
        Invocation::Run(matches) => T::from_arg_matches(&matches)
            .map(Invocation::Run)
            .map_err(|error| error.format(&mut with_config_flags(command, default_file))),
        Invocation::PrintConfig(text) => Ok(Invocation::PrintConfig(text)),
    }
}

/// `parse` for a command built by hand: the matches instead of a parsed
/// struct.
pub fn parse_matches<I, A>(
    command: Command,
    default_file: Option<&Path>,
    args: I,
) -> Result<Invocation<ArgMatches>, clap::Error>
where
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let unbuilt = with_config_flags(command, default_file);
    // Built (defaults filled in) only to be looked at; parsers are made from
    // `unbuilt`, so that what they change is built in.
    let mut command = unbuilt.clone();
    command.build();
    let given = match given_on_command_line(&unbuilt, &args) {
        Ok(given) => given,
        // Help, version or a command line clap refuses anyway: let the real
        // command say it, whatever the file holds.
        Err(lenient_error) => {
            return match unbuilt.try_get_matches_from(&args) {
                Err(error) => Err(error),
                Ok(_) => Err(lenient_error),
            };
        }
    };
    let file = match &given.config_file {
        Some(path) => read_table(&command, path, true)?,
        None => match default_file {
            Some(path) => read_table(&command, path, false)?,
            None => None,
        },
    };
    let mut merged: Vec<OsString> = args.iter().take(1).cloned().collect();
    let mut from_file = FileSettings::default();
    if let Some((path, table)) = &file {
        from_file = file_arguments(&command, path, table, &given.ids)?;
        merged.extend(from_file.arguments.iter().cloned());
    }
    merged.extend(args.iter().skip(1).cloned());
    let mut parser = if given.print_config {
        unbuilt.mut_args(|arg| arg.required(false))
    } else {
        unbuilt
    };
    let matches = parser
        .try_get_matches_from_mut(&merged)
        .map_err(|error| blame_file(error, &mut command, file.as_ref(), &from_file))?;
    if given.print_config {
        render(&command, &matches).map(Invocation::PrintConfig)
    } else {
        Ok(Invocation::Run(matches))
    }
}

/// A daemon's command with `--config` and `--print-config` added.
pub fn with_config_flags(command: Command, default_file: Option<&Path>) -> Command {
    let config_help = match default_file {
        Some(path) => format!(
            "TOML file of settings, keyed by the long flag names (default: {}, \
             when it exists); flags given here override it",
            path.display()
        ),
        None => "TOML file of settings, keyed by the long flag names; flags \
                 given here override it"
            .to_string(),
    };
    command
        .arg(
            Arg::new(CONFIG_FLAG)
                .long(CONFIG_FLAG)
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help(config_help),
        )
        .arg(
            Arg::new(PRINT_CONFIG_FLAG)
                .long(PRINT_CONFIG_FLAG)
                .action(ArgAction::SetTrue)
                .help(
                    "Print the effective configuration (built-in defaults, then the \
                     config file, then flags) as commented TOML and exit",
                ),
        )
}

/// The settable flags of a command: every argument with a long name except
/// help, version, `--config` and `--print-config`. Their long names are the
/// keys of a config file.
pub fn settable(command: &Command) -> impl Iterator<Item = &Arg> {
    command.get_arguments().filter(|arg| {
        !matches!(arg.get_action(), ArgAction::Help | ArgAction::Version)
            && arg
                .get_long()
                .is_some_and(|long| long != CONFIG_FLAG && long != PRINT_CONFIG_FLAG)
    })
}

/// What the command line itself says, before any file is read.
struct CommandLine {
    /// Arguments given on the command line (their file keys are ignored).
    ids: HashSet<String>,
    config_file: Option<PathBuf>,
    print_config: bool,
}

/// Reads the command line with a parser that checks nothing but the flags'
/// names (no required flags, every value accepted), to learn which flags
/// it gives and where the config file is.
fn given_on_command_line(command: &Command, args: &[OsString]) -> Result<CommandLine, clap::Error> {
    let lenient = command.clone().mut_args(|arg| {
        let arg = arg.required(false);
        if arg.get_action().takes_values() {
            arg.value_parser(ValueParser::os_string())
        } else {
            arg
        }
    });
    let matches = lenient.try_get_matches_from(args)?;
    let ids = command
        .get_arguments()
        .map(|arg| arg.get_id().as_str())
        .filter(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
        .map(str::to_string)
        .collect();
    Ok(CommandLine {
        ids,
        config_file: matches.get_one::<OsString>(CONFIG_FLAG).map(PathBuf::from),
        print_config: matches.get_flag(PRINT_CONFIG_FLAG),
    })
}

/// Reads and parses a config file. A missing file is an error when it was
/// named (`explicit`), and no file at all when it is the default location.
fn read_table(
    command: &Command,
    path: &Path,
    explicit: bool,
) -> Result<Option<(PathBuf, toml::Table)>, clap::Error> {
    let fail = |message: String| {
        command
            .clone()
            .error(ErrorKind::Io, format!("{}: {message}", path.display()))
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(error) => return Err(fail(format!("cannot read the config file: {error}"))),
    };
    let mut bytes = Vec::new();
    file.take(CONFIG_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| fail(format!("cannot read the config file: {error}")))?;
    if bytes.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(fail(format!(
            "a config file may hold at most {CONFIG_FILE_BYTES_MAX} bytes"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".to_string()))?;
    let table = text.parse::<toml::Table>().map_err(|error| {
        let line = error
            .span()
            .and_then(|span| text.as_bytes().get(..span.start))
            .map(|before| before.iter().filter(|byte| **byte == b'\n').count() + 1);
        let place = line
            .map(|line| format!(" (line {line})"))
            .unwrap_or_default();
        let message = error.message().trim_end().replace('\n', "; ");
        fail(format!("not valid TOML{place}: {message}"))
    })?;
    Ok(Some((path.to_path_buf(), table)))
}

/// The arguments a file's settings stand for, and which flag each key set.
#[derive(Default)]
struct FileSettings {
    arguments: Vec<OsString>,
    /// (argument id, key) of every setting used.
    keys: Vec<(String, String)>,
}

/// Turns a file's table into arguments, leaving out the keys of flags the
/// command line gives (`given`). Every key is checked, used or not.
fn file_arguments(
    command: &Command,
    path: &Path,
    table: &toml::Table,
    given: &HashSet<String>,
) -> Result<FileSettings, clap::Error> {
    let mut settings = FileSettings::default();
    for (key, value) in table {
        let Some(arg) = settable(command).find(|arg| arg.get_long() == Some(key.as_str())) else {
            return Err(unknown_key(command, path, key));
        };
        let arguments = setting_arguments(arg, key, value).map_err(|(expected, found)| {
            command.clone().error(
                ErrorKind::InvalidValue,
                format!(
                    "{}: {key}: expected {expected}, found {found}",
                    path.display()
                ),
            )
        })?;
        let id = arg.get_id().as_str();
        if !given.contains(id) {
            settings.arguments.extend(arguments);
            settings.keys.push((id.to_string(), key.clone()));
        }
    }
    Ok(settings)
}

/// The arguments one setting stands for, or what its value should have
/// been and what it was.
fn setting_arguments(
    arg: &Arg,
    key: &str,
    value: &toml::Value,
) -> Result<Vec<OsString>, (&'static str, String)> {
    let flag = format!("--{key}");
    let found = |value: &toml::Value| format!("{} {}", article(value.type_str()), value.type_str());
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match value {
            toml::Value::Boolean(true) => Ok(vec![flag.into()]),
            toml::Value::Boolean(false) => Ok(Vec::new()),
            _ => Err(("true or false", found(value))),
        },
        action if action.takes_values() => {
            let many = takes_many(arg);
            let texts: Vec<String> = match value {
                toml::Value::Array(items) if many => items
                    .iter()
                    .map(|item| {
                        scalar_text(item).ok_or_else(|| {
                            (
                                "an array of strings or integers",
                                format!("{} in the array", found(item)),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
                _ => vec![scalar_text(value).ok_or_else(|| {
                    let expected = if many {
                        "an array, a string or an integer"
                    } else {
                        "a string or an integer"
                    };
                    (expected, found(value))
                })?],
            };
            Ok(value_arguments(arg, &flag, texts))
        }
        _ => Err(("nothing: this flag cannot be set in a file", found(value))),
    }
}

/// The text a string or integer stands for on the command line.
fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(number) => Some(number.to_string()),
        _ => None,
    }
}

/// True when a flag holds a list: it may be repeated, or splits its value.
fn takes_many(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
        || arg.get_value_delimiter().is_some()
        || arg
            .get_num_args()
            .is_some_and(|range| range.max_values() > 1)
}

/// The arguments that give `arg` these values, as its flag would be
/// written: one `--flag=VALUE` per value for a repeatable flag, values
/// joined by the delimiter for a splitting one. `--flag=VALUE` keeps a value
/// that starts with `-` a value.
fn value_arguments(arg: &Arg, flag: &str, texts: Vec<String>) -> Vec<OsString> {
    match (
        arg.get_action(),
        arg.get_value_delimiter(),
        texts.as_slice(),
    ) {
        (_, _, []) => Vec::new(),
        (ArgAction::Append, _, _) => texts
            .iter()
            .map(|text| format!("{flag}={text}").into())
            .collect(),
        (_, Some(delimiter), _) => {
            let joined = texts.join(delimiter.encode_utf8(&mut [0; 4]));
            vec![format!("{flag}={joined}").into()]
        }
        (_, None, [text]) => vec![format!("{flag}={text}").into()],
        (_, None, _) => std::iter::once(flag.to_string())
            .chain(texts)
            .map(OsString::from)
            .collect(),
    }
}

/// The error for a key no flag has, with the closest key there is.
fn unknown_key(command: &Command, path: &Path, key: &str) -> clap::Error {
    let closest = settable(command)
        .filter_map(Arg::get_long)
        .map(|long| (edit_distance(key, long), long))
        .min()
        .filter(|(distance, _)| *distance <= SUGGESTION_DISTANCE_MAX);
    let hint = match closest {
        Some((_, long)) => format!(" (did you mean {long}?)"),
        None => String::new(),
    };
    command.clone().error(
        ErrorKind::UnknownArgument,
        format!(
            "{}: unknown key {key}{hint}; keys are the long flag names, see --help",
            path.display()
        ),
    )
}

/// Levenshtein distance between two short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Rewrites a clap error about a value the file gave so that it names the
/// file and the key; other errors pass unchanged.
fn blame_file(
    error: clap::Error,
    command: &mut Command,
    file: Option<&(PathBuf, toml::Table)>,
    settings: &FileSettings,
) -> clap::Error {
    let Some((path, _)) = file else {
        return error;
    };
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    // clap shows the argument as `--long <VALUE>` or `--long`.
    let long = shown
        .trim_start_matches('-')
        .split([' ', '='])
        .next()
        .unwrap_or_default();
    let Some(key) = settings.keys.iter().find_map(|(id, key)| {
        let arg = command.get_arguments().find(|arg| arg.get_id() == id)?;
        (arg.get_long() == Some(long)).then_some(key)
    }) else {
        return error;
    };
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => Some(value.clone()),
        _ => None,
    };
    let detail = match (value, std::error::Error::source(&error)) {
        // Value parsers often quote the value themselves.
        (Some(value), Some(cause)) if cause.to_string().contains(&format!("{value:?}")) => {
            cause.to_string()
        }
        (Some(value), Some(cause)) => format!("invalid value {value:?}: {cause}"),
        _ => first_line(&error.render().to_string()),
    };
    command.error(error.kind(), format!("{}: {key}: {detail}", path.display()))
}

/// The first line of a rendered clap error, without its `error: ` prefix.
fn first_line(rendered: &str) -> String {
    let line = rendered.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// `--print-config`: every settable flag as a TOML key with its effective
/// value, after its help text as comment lines; a flag without a value is
/// shown commented out. The text loads back to the same settings.
fn render(command: &Command, matches: &ArgMatches) -> Result<String, clap::Error> {
    let mut text = format!(
        "# {} configuration: built-in defaults, overridden by the config file,\n\
         # overridden by flags. Keys are the long flag names.\n",
        command.get_name()
    );
    for arg in settable(command) {
        let Some(long) = arg.get_long() else {
            continue;
        };
        text.push('\n');
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        for line in wrap_comment(&help, COMMENT_WIDTH) {
            let _ = writeln!(text, "{line}");
        }
        let key = toml_key(long);
        let id = arg.get_id().as_str();
        if !arg.get_action().takes_values() {
            let given = matches.value_source(id) == Some(ValueSource::CommandLine);
            let _ = writeln!(text, "{key} = {given}");
            continue;
        }
        let values: Vec<&OsStr> = matches
            .get_raw(id)
            .map(Iterator::collect)
            .unwrap_or_default();
        let mut literals = Vec::with_capacity(values.len());
        for value in values {
            let Some(value) = value.to_str() else {
                return Err(command.clone().error(
                    ErrorKind::InvalidUtf8,
                    format!("{long}: its value is not UTF-8, which TOML cannot hold"),
                ));
            };
            literals.push(toml_value(value));
        }
        if literals.is_empty() {
            let _ = writeln!(text, "# {key} = ...");
        } else if takes_many(arg) {
            let _ = writeln!(text, "{key} = [{}]", literals.join(", "));
        } else {
            let _ = writeln!(text, "{key} = {}", literals.join(" "));
        }
    }
    Ok(text)
}

/// Help text as `# ` comment lines of at most `width` columns (a longer
/// word gets a line of its own).
fn wrap_comment(help: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in help.lines() {
        let mut line = String::from("#");
        for word in paragraph.split_whitespace() {
            if line.len() > 1 && line.len() + 1 + word.len() > width {
                lines.push(std::mem::replace(&mut line, String::from("#")));
            }
            line.push(' ');
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_string()
    } else {
        toml_string(key)
    }
}

/// A value as TOML: an integer when the text is one exactly as TOML writes
/// it (so it loads back to the same text), else a string.
fn toml_value(text: &str) -> String {
    match text.parse::<i64>() {
        Ok(number) if number.to_string() == text => text.to_string(),
        _ => toml_string(text),
    }
}

/// A TOML basic string: quoted, with backslash, quote and control
/// characters escaped.
fn toml_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04X}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// "a" or "an" before a TOML type name.
fn article(type_name: &str) -> &'static str {
    if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small daemon-like command: a required flag, a default, a switch, a
    /// list and a validated value.
    #[derive(Debug, PartialEq, Parser)]
    #[command(name = "dfs-test")]
    struct Flags {
        /// Where data goes.
        #[arg(long)]
        data: String,
        /// How many.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..))]
        replication: u8,
        /// Run open.
        #[arg(long)]
        insecure: bool,
        /// Directories.
        #[arg(long, value_delimiter = ',')]
        dirs: Vec<PathBuf>,
        /// An optional text.
        #[arg(long)]
        name: Option<String>,
    }

    fn write_file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("test.toml");
        std::fs::write(&path, text).expect("write the config file");
        path
    }

    fn run(args: &[&str], default_file: Option<&Path>) -> Result<Flags, String> {
        let mut line = vec!["dfs-test"];
        line.extend_from_slice(args);
        match parse::<Flags, _, _>(default_file, line) {
            Ok(Invocation::Run(flags)) => Ok(flags),
            Ok(Invocation::PrintConfig(text)) => Err(format!("printed:\n{text}")),
            Err(error) => Err(error.to_string()),
        }
    }

    fn print(args: &[&str]) -> String {
        let mut line = vec!["dfs-test", "--print-config"];
        line.extend_from_slice(args);
        match parse::<Flags, _, _>(None, line) {
            Ok(Invocation::PrintConfig(text)) => text,
            other => panic!("--print-config did not print: {other:?}"),
        }
    }

    #[test]
    fn a_file_sets_flags_and_flags_win() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = write_file(
            dir.path(),
            "data = \"/d\"\nreplication = 2\ninsecure = true\ndirs = [\"/a\", \"/b\"]\n",
        );
        let path = file.to_str().expect("UTF-8 path");
        let flags = run(&["--config", path], None).expect("file alone");
        assert_eq!(
            flags,
            Flags {
                data: "/d".into(),
                replication: 2,
                insecure: true,
                dirs: vec!["/a".into(), "/b".into()],
                name: None,
            }
        );
        let flags = run(
            &[
                "--dirs",
                "/c",
                "--config",
                path,
                "--replication=1",
                "--data",
                "/e",
            ],
            None,
        )
        .expect("flags over the file");
        assert_eq!(flags.dirs, vec![PathBuf::from("/c")]);
        assert_eq!(flags.replication, 1);
        assert_eq!(flags.data, "/e");
        assert!(flags.insecure);
    }

    #[test]
    fn the_default_file_is_read_only_when_it_exists() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let missing = dir.path().join("absent.toml");
        let flags = run(&["--data", "/d"], Some(&missing)).expect("no default file");
        assert_eq!(flags.replication, 3);
        let file = write_file(dir.path(), "replication = 5\n");
        let flags = run(&["--data", "/d"], Some(&file)).expect("default file");
        assert_eq!(flags.replication, 5);
        let missing_text = missing.to_str().expect("UTF-8 path");
        let error = run(&["--data", "/d", "--config", missing_text], None).expect_err("missing");
        assert!(error.contains(missing_text), "{error}");
    }

    #[test]
    fn bad_files_name_the_file_and_key() {
        let dir = tempfile::tempdir().expect("temporary directory");
        for (text, expected) in [
            (
                "replicaton = 2",
                &["replicaton", "did you mean replication"][..],
            ),
            ("zzz = 1", &["unknown key zzz"]),
            ("config = \"/x\"", &["unknown key config"]),
            (
                "insecure = \"yes\"",
                &["insecure: expected true or false, found a string"],
            ),
            (
                "replication = true",
                &["replication: expected a string or an integer, found a boolean"],
            ),
            ("dirs = [1.5]", &["dirs: expected an array of strings"]),
            ("replication = 0", &["replication: invalid value \"0\""]),
            (
                "replication = \"lots\"",
                &["replication: invalid value \"lots\""],
            ),
            ("data = ", &["not valid TOML"]),
        ] {
            let file = write_file(dir.path(), text);
            let error = run(
                &["--data", "/d", "--config", file.to_str().expect("UTF-8")],
                None,
            )
            .expect_err(text);
            assert!(
                error.contains(&format!("{}: ", file.display())),
                "{text}: {error}"
            );
            for part in expected {
                assert!(error.contains(part), "{text}: {error}");
            }
        }
    }

    #[test]
    fn print_config_loads_back_to_the_same_settings() {
        let defaults = print(&[]);
        assert!(
            defaults.contains("# Where data goes\n# data = ...\n"),
            "{defaults}"
        );
        assert!(defaults.contains("replication = 3\n"), "{defaults}");
        assert!(defaults.contains("insecure = false\n"), "{defaults}");
        let text = print(&["--data", "/d \"quoted\"\\", "--dirs", "/a,/b", "--insecure"]);
        assert!(text.contains("dirs = [\"/a\", \"/b\"]\n"), "{text}");
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = write_file(dir.path(), &text);
        let path = file.to_str().expect("UTF-8 path");
        let loaded = run(&["--config", path], None).expect("load the printed file");
        let direct = run(
            &["--data", "/d \"quoted\"\\", "--dirs", "/a,/b", "--insecure"],
            None,
        )
        .expect("flags");
        assert_eq!(loaded, direct);
        assert_eq!(print(&["--config", path]), text);
    }

    #[test]
    fn help_still_works_with_a_broken_file() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = write_file(dir.path(), "nonsense = 1\n");
        let mut line = vec!["dfs-test", "--help"];
        line.extend(["--config", file.to_str().expect("UTF-8")]);
        let error = parse::<Flags, _, _>(None, line).expect_err("help is shown as an error");
        assert_eq!(error.kind(), ErrorKind::DisplayHelp);
        assert!(error.to_string().contains("--print-config"));
    }

    #[test]
    fn helpers() {
        assert_eq!(edit_distance("replicaton", "replication"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(toml_value("12"), "12");
        assert_eq!(toml_value("012"), "\"012\"");
        assert_eq!(toml_string("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
        assert_eq!(toml_key("a-b_c"), "a-b_c");
        assert_eq!(toml_key("a b"), "\"a b\"");
        assert_eq!(
            wrap_comment("one two three", 9),
            vec!["# one two", "# three"]
        );
    }
}
