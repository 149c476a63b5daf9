//! Prometheus text exposition format 0.0.4: families in, text out. Pure.

use std::fmt::Write;

/// `Content-Type` of what [`render`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: a name (counters end in `_total`), what it means, and its samples.
#[derive(Clone, Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// One line: the family's name plus `suffix` (`_bucket`, `_sum`, `_count` of a
/// histogram; empty otherwise), labels, value.
#[derive(Clone, Debug)]
pub struct Sample {
    pub suffix: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample named as the family.
    pub fn with(mut self, labels: &[(&'static str, &str)], value: f64) -> Self {
        self.samples.push(Sample {
            suffix: "",
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value,
        });
        self
    }

    /// A histogram from cumulative bucket counts (one per bound), its count and sum.
    pub fn histogram(
        name: &'static str,
        help: &'static str,
        bounds: &[f64],
        cumulative: &[u64],
        count: u64,
        sum: f64,
    ) -> Self {
        let mut f = Family::new(name, Kind::Histogram, help);
        for (b, n) in bounds.iter().zip(cumulative) {
            f.samples.push(Sample {
                suffix: "_bucket",
                labels: vec![("le", number(*b))],
                value: *n as f64,
            });
        }
        f.samples.push(Sample {
            suffix: "_bucket",
            labels: vec![("le", "+Inf".into())],
            value: count as f64,
        });
        f.samples.push(Sample {
            suffix: "_sum",
            labels: Vec::new(),
            value: sum,
        });
        f.samples.push(Sample {
            suffix: "_count",
            labels: Vec::new(),
            value: count as f64,
        });
        f
    }
}

/// The text of `families`, in the order given.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
        for s in &f.samples {
            out.push_str(f.name);
            out.push_str(s.suffix);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            out.push(' ');
            out.push_str(&number(s.value));
            out.push('\n');
        }
    }
    out
}

/// A sample value as the format spells it: integers without a fraction, `+Inf`, `NaN`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_render_with_help_type_and_labels() {
        let text = render(&[
            Family::new("zest_x_total", Kind::Counter, "Things.")
                .with(&[("source", "peer")], 3.0)
                .with(&[("source", "a\"b\\c\nd")], 0.5),
            Family::new("zest_y", Kind::Gauge, "A gauge.").with(&[], 7.0),
        ]);
        assert_eq!(
            text,
            "# HELP zest_x_total Things.\n# TYPE zest_x_total counter\n\
             zest_x_total{source=\"peer\"} 3\n\
             zest_x_total{source=\"a\\\"b\\\\c\\nd\"} 0.5\n\
             # HELP zest_y A gauge.\n# TYPE zest_y gauge\nzest_y 7\n"
        );
    }

    #[test]
    fn histograms_end_with_inf_sum_and_count() {
        let text = render(&[Family::histogram(
            "zest_h_seconds",
            "H.",
            &[0.5, 2.0],
            &[1, 3],
            4,
            9.25,
        )]);
        assert!(
            text.contains("zest_h_seconds_bucket{le=\"0.5\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("zest_h_seconds_bucket{le=\"2\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("zest_h_seconds_bucket{le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("zest_h_seconds_sum 9.25\nzest_h_seconds_count 4\n"));
    }
}
