//! sonora-eval: physics and consistency evaluation suites, checkpoint scoring, dashboards.
//!
//! Not yet built: metrics and suites arrive with the evaluation issue. This crate is
//! intentionally empty so the workspace layout matches the design card.
