//! Each metric separates ground truth from the perturbation it targets (AUC ≥ 0.9) while
//! scoring untouched ground truth near its best.

use sonora_eval::validation::{ValidationConfig, validate_metrics};

#[test]
fn every_metric_catches_its_perturbation_and_likes_ground_truth() {
    let report = validate_metrics(&ValidationConfig {
        clips: 24,
        ..ValidationConfig::default()
    })
    .unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // every targeted metric was scored on the perturbation it targets
    for (metric, p) in sonora_eval::validation::TARGETS {
        assert!(
            report
                .targeted()
                .any(|s| s.metric == *metric && s.perturbation == p.name()),
            "{metric} vs {} was not measured",
            p.name()
        );
    }
    let weak: Vec<String> = report
        .targeted()
        .filter(|s| s.auc.is_nan() || s.auc < 0.9)
        .map(|s| {
            format!(
                "{} vs {}: AUC {:.3} (real {:.4}, perturbed {:.4})",
                s.metric, s.perturbation, s.auc, s.real_mean, s.perturbed_mean
            )
        })
        .collect();
    assert!(
        weak.is_empty(),
        "weak metrics:\n{}\n\n{}",
        weak.join("\n"),
        report.render_text()
    );

    let m = |name: &str| {
        *report
            .real_means
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing on real clips"))
    };
    // ground truth scores near each metric's best
    assert!(
        m("physics.gravity_rel_error") < 0.2,
        "{}",
        m("physics.gravity_rel_error")
    );
    assert!(
        m("physics.bounce_violation") < 0.02,
        "{}",
        m("physics.bounce_violation")
    );
    assert!(
        m("physics.permanence_violation") < 0.05,
        "{}",
        m("physics.permanence_violation")
    );
    assert!(
        m("physics.av_offset_ms") < 20.0,
        "{}",
        m("physics.av_offset_ms")
    );
    assert!(
        m("physics.av_match_rate") > 0.8,
        "{}",
        m("physics.av_match_rate")
    );
    assert!(
        m("physics.prompt_adherence") > 0.9,
        "{}",
        m("physics.prompt_adherence")
    );
    assert!(
        m("consistency.temporal_flicker") < 1.0,
        "{}",
        m("consistency.temporal_flicker")
    );
    assert!(
        m("consistency.subject_consistency") > 0.85,
        "{}",
        m("consistency.subject_consistency")
    );
    assert!(
        m("consistency.background_consistency") > 0.98,
        "{}",
        m("consistency.background_consistency")
    );
    assert!(
        m("consistency.character_identity") > 0.8,
        "{}",
        m("consistency.character_identity")
    );
}
