//! The metric catalogue: every metric documents its range, direction and meaning.

use std::collections::BTreeMap;

use serde::Serialize;

/// What a metric is and how to read it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MetricInfo {
    /// Stable name, `suite.metric`.
    pub name: &'static str,
    /// The range of values (`"[0, 1]"`, `"[0, ∞) ms"`).
    pub range: &'static str,
    /// Whether larger values are better.
    pub higher_is_better: bool,
    /// What it measures, in a sentence.
    pub measures: &'static str,
}

/// Scores of one clip by metric name. A metric that does not apply (no contacts, no
/// character) is absent rather than zero.
pub type Scores = BTreeMap<String, f64>;

/// Orients a score so that larger is always better (for AUC and aggregates).
pub fn oriented(info: &MetricInfo, value: f64) -> f64 {
    if info.higher_is_better { value } else { -value }
}

/// Every metric of both suites.
pub fn catalogue() -> Vec<MetricInfo> {
    let mut v = crate::physics::METRICS.to_vec();
    v.extend_from_slice(crate::consistency::METRICS);
    v
}

/// Looks a metric up by name; the error names the unknown metric and the valid ones.
pub fn lookup(name: &str) -> Result<MetricInfo, String> {
    let all = catalogue();
    all.iter().find(|m| m.name == name).copied().ok_or_else(|| {
        let names: Vec<_> = all.iter().map(|m| m.name).collect();
        format!(
            "unknown metric `{name}`; known metrics: {}",
            names.join(", ")
        )
    })
}
