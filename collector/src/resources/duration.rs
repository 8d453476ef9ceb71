//! Durations in resources: one number and one unit (`500ms`, `30s`, `5m`, `1h`).
//!
//! The form is the subset of Go's duration syntax that Kubernetes' CEL `duration()`
//! accepts, so the CRD's validation rules and [`parse`] accept exactly the same strings:
//! the schema's `pattern` checks the form, a CEL rule checks the bounds, and the store path
//! runs [`parse`] and the same bounds.

use std::time::Duration;

/// The schema pattern of a duration string.
pub const PATTERN: &str = "^[0-9]{1,7}(ms|s|m|h)$";

/// Parses `<digits><unit>` with unit `ms`, `s`, `m` or `h`; anything else is an error that
/// says what is expected.
pub fn parse(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let expected = || format!("{text:?} is not a duration like 500ms, 30s, 5m or 1h");
    if number.is_empty() || number.len() > 7 {
        return Err(expected());
    }
    let number: u64 = number.parse().map_err(|_| expected())?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        "h" => Ok(Duration::from_secs(number * 3600)),
        _ => Err(expected()),
    }
}

/// Parses and checks `min ..= max`, naming both bounds in the error.
pub fn parse_within(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let duration = parse(text)?;
    if duration < min || duration > max {
        return Err(format!(
            "{text} is out of range ({} to {})",
            format(min),
            format(max)
        ));
    }
    Ok(duration)
}

/// The CEL rule that checks a duration field's bounds, as the CRD carries it.
pub fn bounds_rule(min: Duration, max: Duration) -> String {
    format!(
        "duration(self) >= duration('{}') && duration(self) <= duration('{}')",
        format(min),
        format(max)
    )
}

/// The shortest exact form of a duration in this syntax (`90s`, not `1m30s`).
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_refuses_other_forms() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        for bad in [
            "",
            "s",
            "30",
            "1m30s",
            "1.5s",
            "-1s",
            "30 s",
            "30S",
            "1d",
            "99999999s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        let pattern_digits = PATTERN.contains("{1,7}");
        assert!(
            pattern_digits,
            "the pattern and the parser agree on 7 digits"
        );
    }

    #[test]
    fn bounds_are_inclusive_and_named() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(3600));
        assert!(parse_within("1s", min, max).is_ok());
        assert!(parse_within("1h", min, max).is_ok());
        let error = parse_within("61m", min, max).unwrap_err();
        assert_eq!(error, "61m is out of range (1s to 1h)");
        assert_eq!(
            bounds_rule(min, max),
            "duration(self) >= duration('1s') && duration(self) <= duration('1h')"
        );
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format(Duration::from_secs(90)), "90s");
    }
}
