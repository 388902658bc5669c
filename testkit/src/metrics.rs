//! Prometheus metrics as tests read them: a strict reader of the text
//! exposition format, as the daemons write it (`# HELP`, `# TYPE` and
//! `# UNIT` lines, samples with labels, and `# EOF` last; anything else
//! fails the test, naming the line), and a scrape of `/metrics` over plain
//! HTTP.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub struct Exposition {
    /// Family name -> its type.
    pub families: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// The sum of every sample `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }

    /// True when `name` is a series this exposition can have: a
    /// declared family, or one with its type's suffix.
    pub fn knows(&self, name: &str) -> bool {
        self.families.iter().any(|(family, kind)| {
            suffixes(kind)
                .iter()
                .any(|s| name == format!("{family}{s}"))
        })
    }
}

fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        _ => &[""],
    }
}

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| format!("bad value {text:?}")),
    }
}

/// `{a="x",b="y"}` at the start of `text`: the labels and the rest.
fn labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest.split_once("=\"").ok_or("a label without =\"")?;
        if !is_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut label_value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => label_value.push('\\'),
                    Some((_, '"')) => label_value.push('"'),
                    Some((_, 'n')) => label_value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, c)) => label_value.push(c),
                None => return Err("an unterminated label value".into()),
            }
        };
        if labels.insert(name.to_string(), label_value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &after[end + 1..];
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma;
        } else if !rest.starts_with('}') {
            return Err("labels not separated by ,".into());
        }
    }
}

fn line(exposition: &mut Exposition, line: &str) -> Result<(), String> {
    if let Some(comment) = line.strip_prefix("# ") {
        let mut words = comment.splitn(3, ' ');
        let keyword = words.next().unwrap_or_default();
        let family = words.next().ok_or("a comment without a name")?;
        let text = words.next().ok_or("a comment without text")?;
        if !is_name(family) {
            return Err(format!("bad family name {family:?}"));
        }
        return match keyword {
            "HELP" | "UNIT" => Ok(()),
            "TYPE" => {
                let known = [
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "info",
                    "stateset",
                    "gaugehistogram",
                    "unknown",
                ];
                if !known.contains(&text) {
                    return Err(format!("unknown type {text:?}"));
                }
                if exposition
                    .families
                    .insert(family.to_string(), text.to_string())
                    .is_some()
                {
                    return Err(format!("{family} declared twice"));
                }
                Ok(())
            }
            _ => Err(format!("unknown comment {keyword:?}")),
        };
    }
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    if !is_name(name) {
        return Err(format!("bad sample name {name:?}"));
    }
    let (labels, rest) = if line[name_end..].starts_with('{') {
        labels(&line[name_end..])?
    } else {
        (Default::default(), &line[name_end..])
    };
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut fields = rest.split(' ');
    let sample_value = value(fields.next().unwrap_or_default())?;
    if let Some(timestamp) = fields.next() {
        value(timestamp)?;
    }
    if fields.next().is_some() {
        return Err("more after the timestamp".into());
    }
    if !exposition.knows(name) {
        return Err(format!("{name} belongs to no declared family"));
    }
    exposition.samples.push(Sample {
        name: name.to_string(),
        labels,
        value: sample_value,
    });
    Ok(())
}

/// Parses `text`; panics at the first malformed line.
pub fn parse(text: &str) -> Exposition {
    let mut exposition = Exposition {
        families: BTreeMap::new(),
        samples: Vec::new(),
    };
    let mut lines = text.lines().enumerate().peekable();
    while let Some((number, text_line)) = lines.next() {
        if text_line == "# EOF" {
            assert!(
                lines.peek().is_none(),
                "line {}: text after # EOF",
                number + 1
            );
            return exposition;
        }
        if let Err(why) = line(&mut exposition, text_line) {
            panic!("line {}: {why}: {text_line:?}", number + 1);
        }
    }
    panic!("no # EOF at the end:\n{text}");
}

/// `GET /metrics` from `address`, checked and parsed.
pub fn scrape(address: &str) -> Exposition {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics address");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the answer");
    let response = String::from_utf8(response).expect("a UTF-8 answer");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a header and a body");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(!head.contains("transfer-encoding"), "{head}");
    parse(body)
}
