//! Sizes ("64M", "1G", "4096") and durations ("14d", "10m", "5s", "250ms", "30").

use crate::error::{Error, Result};

/// Parses a byte size: a plain number of bytes or one with a binary suffix
/// K, M, G, T (also KiB, MiB, KB, ...; all are powers of 1024).
pub fn parse_bytes(text: &str) -> Result<u64> {
    let invalid = || {
        Error::Invalid(format!(
            "{text:?}: invalid size (use bytes or a suffix: 4K, 64M, 1G)"
        ))
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(invalid());
    }
    let number: u64 = digits.parse().map_err(|_| invalid())?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(invalid()),
    };
    number.checked_mul(1u64 << shift).ok_or_else(invalid)
}

/// Parses a duration: "14d", "1h", "10m", "5s", "250ms", or a bare number of
/// seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration> {
    let invalid = || {
        Error::Invalid(format!(
            "{text:?}: invalid duration (use 250ms, 5s, 10m, 1h, 14d)"
        ))
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(split);
    let number: u64 = digits.parse().map_err(|_| invalid())?;
    let millis_per_unit: u64 = match suffix {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid()),
    };
    let millis = number.checked_mul(millis_per_unit).ok_or_else(invalid)?;
    Ok(std::time::Duration::from_millis(millis))
}

/// Formats bytes for people: "1.5 GiB", "512 B".
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A calendar time in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// Milliseconds since the Unix epoch as a calendar time (proleptic
/// Gregorian, after Howard Hinnant's `civil_from_days`).
pub fn civil_time(unix_ms: u64) -> CivilTime {
    let seconds = unix_ms / 1000;
    let days = (seconds / 86_400) as i64;
    let second_of_day = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    CivilTime {
        year,
        month,
        day,
        hour: (second_of_day / 3600) as u32,
        minute: (second_of_day / 60 % 60) as u32,
        second: (second_of_day % 60) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sizes() {
        for (text, want) in [
            ("0", 0),
            ("4096", 4096),
            ("4K", 4096),
            ("64M", 64 << 20),
            ("64MiB", 64 << 20),
            ("1G", 1 << 30),
            ("2g", 2 << 30),
        ] {
            assert_eq!(parse_bytes(text).expect(text), want, "{text}");
        }
        for text in ["", "M", "12X", "-1", "99999999999T"] {
            assert!(parse_bytes(text).is_err(), "{text}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("10m").expect("10m"),
            Duration::from_secs(600)
        );
        assert_eq!(parse_duration("5s").expect("5s"), Duration::from_secs(5));
        assert_eq!(parse_duration("30").expect("30"), Duration::from_secs(30));
        assert_eq!(
            parse_duration("250ms").expect("ms"),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("14d").expect("14d"),
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(parse_duration("1h").expect("1h"), Duration::from_secs(3600));
        for text in ["5x", "", "d", "1.5d", "99999999999999999d"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
    }
}
