//! Each metric separates ground truth from the perturbation it targets (AUC ≥ 0.9) while
//! scoring untouched ground truth near its best; the aggregate separates ground truth from
//! a still image, a mostly frozen copy and an untrained model's output.

use std::path::Path;

use sonora_eval::validation::{
    AGGREGATE_TARGETS, UntrainedConfig, ValidationConfig, validate_metrics,
};
use sonora_framework::model::ModelConfig;

#[test]
fn every_metric_catches_its_perturbation_and_likes_ground_truth() {
    let model = ModelConfig::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/model/quickstart.toml"),
    )
    .unwrap();
    let report = validate_metrics(&ValidationConfig {
        clips: 24,
        untrained: Some(UntrainedConfig {
            model,
            clips: 12,
            steps: 4,
            seed: 7,
            device: sonora_framework::device::parse_device("flex").unwrap(),
        }),
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

    // the aggregate: doing nothing, or noise, scores clearly below ground truth
    for target in AGGREGATE_TARGETS {
        let a = report
            .aggregate
            .iter()
            .find(|s| s.perturbation == *target)
            .unwrap_or_else(|| panic!("aggregate vs {target} not measured"));
        assert!(a.targeted);
        assert!(
            a.auc >= 0.9 && a.real_mean - a.perturbed_mean >= 0.05,
            "aggregate vs {target}: AUC {:.3}, real {:.3}, perturbed {:.3}\n{}",
            a.auc,
            a.real_mean,
            a.perturbed_mean,
            report.render_text()
        );
    }
    // the untrained comparison sampled the clips it was asked for
    let u = report
        .aggregate
        .iter()
        .find(|s| s.perturbation == "untrained_model")
        .unwrap();
    assert_eq!(u.n, (12, 12));
    // the two sound metrics agree on real clips and both fail a swapped soundtrack
    let real = &report.sound_metrics[0];
    let swapped = &report.sound_metrics[1];
    assert_eq!(
        (real.clips.as_str(), swapped.clips.as_str()),
        ("real", "sound_swapped")
    );
    assert!(real.n >= 10 && real.contacts_heard > 0.85, "{real:?}");
    assert!(
        swapped.contacts_heard < real.contacts_heard - 0.3,
        "{swapped:?}"
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
    // floor contacts timed from 8 fps pixels land within ±50 ms of their sound on most clips
    assert!(
        m("physics.av_match_rate") > 0.65,
        "{}",
        m("physics.av_match_rate")
    );
    assert!(
        m("physics.contacts_heard") > 0.85,
        "{}",
        m("physics.contacts_heard")
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
