//! What both programs' Prometheus metrics share: constructors that register what they build, the
//! latency buckets, and the text exposition.

pub use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use prometheus::{HistogramOpts, Opts, TextEncoder, core::Collector};

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Call latencies in seconds: from a heartbeat answered from memory (well under a millisecond)
/// through a cold login (Argon2, tens of milliseconds) to the 30 s call timeout.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Builds metrics into one registry. Names and labels are constants of the program, so a failure
/// here is a programming error that the programs' own tests hit first.
pub struct Metrics<'a>(pub &'a Registry);

impl Metrics<'_> {
    fn register<C: Collector + Clone + 'static>(&self, metric: Result<C, prometheus::Error>) -> C {
        let metric = metric.expect("a metric name or label is invalid");
        self.0.register(Box::new(metric.clone())).expect("a metric is registered twice");
        metric
    }

    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::with_opts(Opts::new(name, help)))
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels))
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::with_opts(Opts::new(name, help)))
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        self.register(Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())))
    }

    pub fn histogram_vec(&self, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
        self.register(HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels))
    }
}

/// The registry in Prometheus' text format.
pub fn render(registry: &Registry) -> String {
    // Encoding into a String only fails on invalid UTF-8, which metric names and labels are not.
    TextEncoder::new().encode_to_string(&registry.gather()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_in_the_text_format() {
        let registry = Registry::new();
        let m = Metrics(&registry);
        let calls = m.counter_vec("demo_calls_total", "Calls.", &["code"]);
        let latency = m.histogram("demo_seconds", "Latency.", LATENCY_BUCKETS);
        calls.with_label_values(&["ok"]).inc_by(3);
        latency.observe(0.002);
        let text = render(&registry);
        assert!(text.contains("demo_calls_total{code=\"ok\"} 3"), "{text}");
        assert!(text.contains("demo_seconds_bucket{le=\"0.0025\"} 1"), "{text}");
        assert!(text.contains("demo_seconds_bucket{le=\"0.001\"} 0"), "{text}");
    }
}
