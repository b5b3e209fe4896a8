//! The registry resolves `NAME@ALIAS`, `NAME@vN` and `NAME` to a version whose files it
//! checks, and refuses a lower score before writing anything.

mod common;

use burn::prelude::*;
use sonora_framework::checkpoint;
use sonora_framework::model::{CaptionTokenizer, SonoraDit};
use sonora_framework::registry::{Registry, RegistryError, Score};

use common::cfg;

fn score(v: f64) -> Option<Score> {
    Some(Score {
        value: v,
        kind: "physics normalised".into(),
        report: "r.json".into(),
    })
}

#[test]
fn versions_resolve_verified_and_a_lower_score_writes_nothing() {
    let c = cfg();
    let device = Device::flex();
    let tok =
        CaptionTokenizer::train(["a red ball"].into_iter(), c.vocab_size, c.text_max_len).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    checkpoint::save(
        &ck,
        &SonoraDit::new(&c, &device),
        &tok,
        7,
        &[],
        serde_json::Value::Null,
    )
    .unwrap();
    let reg = Registry::open(&dir.path().join("reg"));
    let p = reg
        .promote(&ck, "m", Some("production"), score(0.4), false, "t")
        .unwrap();
    assert_eq!(p.version.version, 1);
    for spec in ["m", "m@production", "m@v1"] {
        let (d, v) = reg.resolve(spec).unwrap();
        assert_eq!((v.version, v.step), (1, 7), "{spec}");
        assert!(d.join("model.safetensors").is_file());
    }
    let e = reg.resolve("m@staging").unwrap_err().to_string();
    assert!(
        e.contains("no alias `staging`") && e.contains("production → v1"),
        "{e}"
    );
    // a lower score of the same kind: refused, nothing written
    let before = std::fs::read(dir.path().join("reg/m/model.json")).unwrap();
    let e = reg
        .promote(&ck, "m", Some("production"), score(0.3), false, "t")
        .unwrap_err();
    assert!(
        matches!(e, RegistryError::LowerScore { from: 1, to: 2, .. }),
        "{e}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("reg/m/model.json")).unwrap(),
        before
    );
    // a score of another kind is not compared
    let raw = Some(Score {
        kind: "physics raw".into(),
        ..score(0.1).unwrap()
    });
    let p = reg
        .promote(&ck, "m", Some("production"), raw, false, "t")
        .unwrap();
    assert_eq!(p.version.version, 2);
    // a damaged file of a version is found when it is resolved
    let (d, _) = reg.resolve("m@v2").unwrap();
    let w = d.join("tokenizer.json");
    // hard links share bytes with the checkpoint: replace the file instead of editing it
    let mut t = std::fs::read(&w).unwrap();
    std::fs::remove_file(&w).unwrap();
    t.push(b'\n');
    std::fs::write(&w, t).unwrap();
    let e = reg.resolve("m@v2").unwrap_err().to_string();
    assert!(e.contains("tokenizer.json") && e.contains("damaged"), "{e}");
    // the checkpoint itself was not touched
    checkpoint::read_manifest(&ck).unwrap();
}
