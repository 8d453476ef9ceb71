//! The two exposition formats, written by hand so a scrape of a whole fleet streams out
//! family by family without being built in memory first: Prometheus text 0.0.4 (the
//! default, and what cAdvisor serves) and OpenMetrics 1.0 (when the scraper asks for it).
//!
//! Differences handled here: OpenMetrics names a counter family without its `_total`
//! suffix (a counter whose name lacks it, such as cAdvisor's `container_memory_failcnt`,
//! is declared `unknown` there, as client_golang does), escapes `"` in HELP too, and ends
//! with `# EOF`. Label values are escaped the same way in both. Samples carry no
//! timestamps (see ARCHITECTURE.md).

use std::fmt::Write as _;

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers: OpenMetrics when it is asked for at least as
    /// strongly as plain text, else text 0.0.4 (the fallback every scraper understands).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut openmetrics = 0.0f32;
        let mut text = 0.0f32;
        for clause in accept.split(',') {
            let mut parts = clause.split(';').map(str::trim);
            let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut version = None;
            for parameter in parts {
                if let Some((name, value)) = parameter.split_once('=') {
                    match name.trim() {
                        "q" => q = value.trim().parse().unwrap_or(0.0),
                        "version" => version = Some(value.trim().to_owned()),
                        _ => {}
                    }
                }
            }
            match kind.as_str() {
                "application/openmetrics-text"
                    if matches!(version.as_deref(), None | Some("1.0.0") | Some("0.0.1")) =>
                {
                    openmetrics = openmetrics.max(q);
                }
                "text/plain" | "*/*" | "text/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric family's name, type and help text.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// Writes families and samples into a buffer.
pub struct Encoder {
    pub format: Format,
    pub out: String,
}

impl Encoder {
    pub fn new(format: Format) -> Self {
        Encoder {
            format,
            out: String::with_capacity(64 * 1024),
        }
    }

    /// The `# HELP` and `# TYPE` lines that open a family.
    pub fn family(&mut self, family: &Family) {
        self.family_of(family.name, family.kind, family.help);
    }

    /// The same for a family named at run time.
    pub fn family_of(&mut self, name: &str, kind: Kind, help: &str) {
        let (name, kind) = match (self.format, kind) {
            (Format::Text, Kind::Counter) => (name, "counter"),
            (Format::OpenMetrics, Kind::Counter) => match name.strip_suffix("_total") {
                Some(base) => (base, "counter"),
                None => (name, "unknown"),
            },
            (_, Kind::Gauge) => (name, "gauge"),
            (_, Kind::Histogram) => (name, "histogram"),
        };
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_into(&mut self.out, help, self.format == Format::OpenMetrics);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
    }

    /// One sample: `name{labels,extra} value`. `labels` is already escaped and
    /// comma-separated (see [`LabelSet`]); `extra` values are escaped here.
    pub fn sample(&mut self, name: &str, labels: &str, extra: &[(&str, &str)], value: Value) {
        self.out.push_str(name);
        if !labels.is_empty() || !extra.is_empty() {
            self.out.push('{');
            self.out.push_str(labels);
            for (i, (key, val)) in extra.iter().enumerate() {
                if i > 0 || !labels.is_empty() {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                escape_into(&mut self.out, val, true);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write(&mut self.out);
        self.out.push('\n');
    }

    /// What ends an exposition.
    pub fn finish(&mut self) {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
    }

    /// Takes what was written so far.
    pub fn take(&mut self) -> String {
        std::mem::replace(&mut self.out, String::with_capacity(64 * 1024))
    }
}

/// A sample's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
}

impl Value {
    /// A count of nanoseconds as seconds.
    pub fn seconds_from_ns(ns: u64) -> Value {
        Value::Float(ns as f64 / 1e9)
    }

    /// A `u64` counter or gauge; beyond `i64` (never, for real counters) as a float.
    pub fn count(n: u64) -> Value {
        i64::try_from(n).map_or(Value::Float(n as f64), Value::Int)
    }

    fn write(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) if x.is_nan() => f.write_str("NaN"),
            Value::Float(x) if x.is_infinite() => {
                f.write_str(if x > 0.0 { "+Inf" } else { "-Inf" })
            }
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Escapes a label value (or HELP text): `\` and newline always, `"` in label values and
/// OpenMetrics HELP.
pub fn escape_into(out: &mut String, text: &str, quotes: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A set of labels rendered once (escaped, comma-separated, without braces) and reused for
/// every sample of the same series owner. Boxed to its exact length: every container a
/// replica exports holds one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSet(Box<str>);

impl LabelSet {
    /// Labels with empty values are left out: to Prometheus, an empty label is no label.
    pub fn new<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut text = String::new();
        for (key, value) in labels {
            if value.is_empty() {
                continue;
            }
            if !text.is_empty() {
                text.push(',');
            }
            text.push_str(key);
            text.push_str("=\"");
            escape_into(&mut text, value, true);
            text.push('"');
        }
        LabelSet(text.into_boxed_str())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Docker label key as a Prometheus label name, the way cAdvisor makes one: prefixed
/// `container_label_`, every character outside `[a-zA-Z0-9_]` turned into `_`.
pub fn docker_label_name(key: &str) -> String {
    let mut name = String::with_capacity("container_label_".len() + key.len());
    name.push_str("container_label_");
    name.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILCNT: Family = Family {
        name: "container_memory_failcnt",
        kind: Kind::Counter,
        help: "Number of memory usage hits limits",
    };
    const CPU: Family = Family {
        name: "container_cpu_usage_seconds_total",
        kind: Kind::Counter,
        help: "Cumulative cpu time consumed in seconds.",
    };

    #[test]
    fn hostile_label_values_are_escaped() {
        let labels = LabelSet::new([("name", "a\"b\\c\nd"), ("image", ""), ("host", "h\u{e9}")]);
        assert_eq!(labels.as_str(), r#"name="a\"b\\c\nd",host="hé""#);
        let mut encoder = Encoder::new(Format::Text);
        encoder.sample(
            "m",
            labels.as_str(),
            &[("interface", "et\"h0")],
            Value::Int(3),
        );
        assert_eq!(
            encoder.out,
            "m{name=\"a\\\"b\\\\c\\nd\",host=\"hé\",interface=\"et\\\"h0\"} 3\n"
        );
    }

    #[test]
    fn openmetrics_names_counters_without_total_and_ends_with_eof() {
        let mut text = Encoder::new(Format::Text);
        text.family(&CPU);
        text.family(&FAILCNT);
        text.finish();
        assert_eq!(
            text.out,
            "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.\n\
             # TYPE container_cpu_usage_seconds_total counter\n\
             # HELP container_memory_failcnt Number of memory usage hits limits\n\
             # TYPE container_memory_failcnt counter\n"
        );
        let mut om = Encoder::new(Format::OpenMetrics);
        om.family(&CPU);
        om.family(&FAILCNT);
        om.finish();
        assert_eq!(
            om.out,
            "# HELP container_cpu_usage_seconds Cumulative cpu time consumed in seconds.\n\
             # TYPE container_cpu_usage_seconds counter\n\
             # HELP container_memory_failcnt Number of memory usage hits limits\n\
             # TYPE container_memory_failcnt unknown\n\
             # EOF\n"
        );
    }

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        let line = |value| {
            let mut encoder = Encoder::new(Format::Text);
            encoder.sample("m", "", &[], value);
            encoder.out
        };
        assert_eq!(line(Value::Int(-5)), "m -5\n");
        assert_eq!(line(Value::seconds_from_ns(1_500_000_000)), "m 1.5\n");
        assert_eq!(line(Value::Float(f64::NAN)), "m NaN\n");
        assert_eq!(line(Value::Float(f64::NEG_INFINITY)), "m -Inf\n");
        assert_eq!(line(Value::count(u64::MAX)), "m 18446744073709552000\n");
    }

    #[test]
    fn the_format_follows_the_accept_header() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        // Prometheus 2 and 3 ask for OpenMetrics first.
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,\
            application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.9,application/openmetrics-text;q=0.5")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=2.0.0")),
            Format::Text,
            "an unknown version is not served"
        );
    }

    #[test]
    fn docker_label_keys_become_prometheus_label_names() {
        assert_eq!(
            docker_label_name("com.docker.compose.service"),
            "container_label_com_docker_compose_service"
        );
        assert_eq!(docker_label_name("tëam/x-y"), "container_label_t_am_x_y");
    }
}
