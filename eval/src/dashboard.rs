//! `sonora eval dashboard RUN_DIR`: one self-contained HTML page (no script, no network:
//! charts are inline SVG, clips are embedded MP4 data URIs, a Content-Security-Policy
//! forbids anything else) with, per suite: the best checkpoint's normalised score first,
//! then per metric where it stands between the untrained floor and the data and whether
//! it beats the floor; charts over training steps when there are two checkpoints or more
//! (a single checkpoint is a row of that table, not a dot on a chart); a comparison table
//! of every scored source (scrolling inside its box at narrow widths); and the best
//! checkpoint's clips playable beside their scores in a grid that reflows with the width.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::EvalError;
use crate::metric::lookup;
use crate::report::{Report, is_reference, label};

/// Every `report.json` under `<run>/eval/`, with its directory.
pub fn find_reports(run_dir: &Path) -> Result<Vec<(PathBuf, Report)>, EvalError> {
    let root = run_dir.join("eval");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "report.json") {
                out.push((d.clone(), Report::read(&p)?));
            }
        }
    }
    if out.is_empty() {
        return Err(EvalError::Invalid(format!(
            "no eval reports under {} (run `sonora eval run --checkpoint {}/checkpoints/step-N --suite …` first)",
            root.display(),
            run_dir.display()
        )));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart of `points` (step, value) with optional reference lines.
fn chart(title: &str, points: &[(u64, f64)], refs: &[(&str, f64)]) -> String {
    let (w, h, pad) = (320.0, 160.0, 30.0);
    let all: Vec<f64> = points
        .iter()
        .map(|p| p.1)
        .chain(refs.iter().map(|r| r.1))
        .collect();
    let (mut lo, mut hi) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let smax = points.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let x = |s: f64| pad + (w - 2.0 * pad) * s / smax;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - lo) / (hi - lo);
    let mut s = format!(
        r##"<figure class="chart"><svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{t}"><rect x="0" y="0" width="{w}" height="{h}" fill="#fff"/>"##,
        t = esc(title)
    );
    let _ = write!(
        s,
        r##"<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><text x="{pad}" y="{ty}" font-size="10">{lo:.3}</text><text x="{pad}" y="12" font-size="10">{hi:.3}</text><text x="{r}" y="{ty}" font-size="10" text-anchor="end">step {smax}</text>"##,
        b = h - pad,
        r = w - pad,
        ty = h - 8.0
    );
    for (name, v) in refs {
        let _ = write!(
            s,
            r##"<line x1="{pad}" y1="{yv:.1}" x2="{r}" y2="{yv:.1}" stroke="#c33" stroke-dasharray="4 3"/><text x="{r}" y="{yt:.1}" font-size="9" text-anchor="end" fill="#c33">{n}</text>"##,
            yv = y(*v),
            yt = y(*v) - 2.0,
            r = w - pad,
            n = esc(name)
        );
    }
    if !points.is_empty() {
        let path: Vec<String> = points
            .iter()
            .map(|(st, v)| format!("{:.1},{:.1}", x(*st as f64), y(*v)))
            .collect();
        let _ = write!(
            s,
            r##"<polyline fill="none" stroke="#2563eb" stroke-width="2" points="{}"/>"##,
            path.join(" ")
        );
        for (st, v) in points {
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#2563eb"><title>step {st}: {v:.4}</title></circle>"##,
                x(*st as f64),
                y(*v)
            );
        }
    }
    let _ = write!(s, "</svg><figcaption>{}</figcaption></figure>", esc(title));
    s
}

/// The short name of a metric (`physics.gravity_rel_error` → `gravity_rel_error`).
fn short(metric: &str) -> &str {
    metric.rsplit('.').next().unwrap_or(metric)
}

/// `higher is better` / `lower is better` for a metric.
fn direction(metric: &str) -> &'static str {
    lookup(metric).map_or("", |i| {
        if i.higher_is_better {
            "higher is better"
        } else {
            "lower is better"
        }
    })
}

/// `0.123` or `-`.
fn num(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{font:14px system-ui,sans-serif;margin:0 auto;padding:16px 24px;color:#111;max-width:1600px}
h1{font-size:20px;overflow-wrap:anywhere}h2{font-size:18px;margin-top:28px}h3{font-size:15px;margin:20px 0 6px}
table{border-collapse:collapse;margin:6px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}
.scroll{overflow-x:auto;max-width:100%}
.headline{font-size:16px;margin:6px 0 2px}.headline b{font-size:22px}
.note{color:#555;font-size:12px;margin:2px 0 8px;max-width:900px}
.yes{color:#047857;font-weight:600}.no{color:#b91c1c;font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:8px}
.chart{margin:0;min-width:0}.chart svg{width:100%;height:auto;max-width:360px}
.chart figcaption{font-size:12px;overflow-wrap:anywhere}
.clips{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:16px}
.clip{min-width:0;border:1px solid #eee;padding:6px;overflow:hidden}
.clip video{width:100%;image-rendering:pixelated;background:#000;display:block}
.clip p{margin:4px 0;font-size:12px;overflow-wrap:anywhere}
.clip table{width:100%;table-layout:fixed;font-size:12px;margin:4px 0 0}
.clip td{white-space:normal;overflow-wrap:anywhere;padding:2px 4px}
.clip td:first-child{width:70%}
.best{background:#ecfdf5}
"#;

/// Writes `<run>/eval/dashboard.html`; returns its path.
pub fn write_dashboard(run_dir: &Path) -> Result<PathBuf, EvalError> {
    let reports = find_reports(run_dir)?;
    let mut by_suite: BTreeMap<String, Vec<&(PathBuf, Report)>> = BTreeMap::new();
    for r in &reports {
        by_suite.entry(r.1.suite.clone()).or_default().push(r);
    }
    let mut html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; media-src data:; img-src data:">
<title>sonora eval</title><style>{STYLE}</style></head><body>"#
    );
    let _ = write!(
        html,
        "<h1>sonora eval — {}</h1>",
        esc(&run_dir.display().to_string())
    );
    for (suite, reps) in &by_suite {
        html += &suite_section(suite, reps);
    }
    html += "</body></html>\n";
    let p = run_dir.join("eval").join("dashboard.html");
    sonora_framework::fsutil::write_atomic(&p, html.as_bytes())
        .map_err(|e| EvalError::Invalid(format!("{}: {e}", p.display())))?;
    Ok(p)
}

/// One suite: the headline (normalised score first), the best checkpoint placed between
/// floor and ceiling per metric, charts over steps (two checkpoints or more), the
/// comparison table and the best checkpoint's clips.
fn suite_section(suite: &str, reps: &[&(PathBuf, Report)]) -> String {
    let mut html = format!("<section class=\"suite\"><h2>suite: {}</h2>", esc(suite));
    let mut trained: Vec<&Report> = reps
        .iter()
        .map(|r| &r.1)
        .filter(|r| !is_reference(r))
        .collect();
    trained.sort_by_key(|r| r.step.unwrap_or(0));
    let ceiling = reps
        .iter()
        .map(|r| &r.1)
        .find(|r| r.source.starts_with("data:"));
    let baseline = reps
        .iter()
        .map(|r| &r.1)
        .find(|r| r.source.starts_with("untrained:"));
    let by_norm = trained.iter().all(|r| r.normalised_score().is_some());
    let rank = |r: &Report| {
        if by_norm {
            r.normalised_score().unwrap_or(f64::NEG_INFINITY)
        } else {
            r.score
        }
    };
    let best = trained
        .iter()
        .copied()
        .max_by(|a, b| rank(a).total_cmp(&rank(b)));
    match best {
        Some(b) => {
            let _ = write!(
                html,
                "<p class=\"headline\">best checkpoint <b>{}</b>: normalised score <b>{}</b>, raw score {:.3}</p>\
                 <p class=\"note\">normalised: 0 = the untrained model, 1 = the data's own clips, per metric from their mean goodness, clamped to [−1, 2] and averaged (metrics where the data is not 0.05 above the untrained model are left out). Raw: the mean over metrics of each metric's goodness in [0, 1].</p>",
                esc(&label(&b.source)),
                num(b.normalised_score(), 3),
                b.score
            );
            html += &scale_table(b, baseline, ceiling);
        }
        None => html += "<p class=\"note\">no checkpoint scored yet (only references)</p>",
    }
    let metrics: std::collections::BTreeSet<&String> =
        reps.iter().flat_map(|r| r.1.metrics.keys()).collect();
    if trained.len() >= 2 {
        html += &charts(&trained, &metrics, baseline, ceiling);
    }
    html += &compare_table(reps, &metrics, best, &rank);
    if let Some(best) = best
        && let Some((dir, _)) = reps.iter().find(|r| std::ptr::eq(&r.1, best))
    {
        html += &clips(dir, best);
    }
    html += "</section>";
    html
}

/// Per metric of `best`: the untrained floor, the checkpoint, the data ceiling, the
/// normalised value and whether it beats the floor.
fn scale_table(best: &Report, floor: Option<&Report>, ceiling: Option<&Report>) -> String {
    let norm = best.normalised.as_ref();
    let mut html = String::from(
        "<h3>per metric: between the untrained floor and the data</h3><div class=\"scroll\"><table class=\"scale\"><tr><th>metric</th><th>direction</th><th>untrained</th><th>this checkpoint</th><th>data</th><th>normalised</th><th>beats untrained?</th></tr>",
    );
    for (k, m) in &best.metrics {
        let nm = norm.and_then(|n| n.metrics.get(k));
        let mean_of = |r: Option<&Report>| r.and_then(|r| r.metrics.get(k)).map(|s| s.mean);
        let beats = match nm.and_then(|x| x.beats_floor) {
            Some(true) => "<span class=\"yes\">yes</span>",
            Some(false) => "<span class=\"no\">no</span>",
            None => "-",
        };
        let value = match nm {
            Some(x) if x.value.is_none() => "unscaled".to_string(),
            Some(x) => num(x.value, 2),
            None => "-".into(),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{value}</td><td>{beats}</td></tr>",
            esc(k),
            direction(k),
            num(mean_of(floor), 4),
            m.mean,
            num(mean_of(ceiling), 4),
        );
    }
    if let Some(n) = norm
        && !n.by_mode.is_empty()
    {
        let modes: Vec<String> = n
            .by_mode
            .iter()
            .map(|(k, v)| format!("{} {v:.2}", esc(k)))
            .collect();
        let _ = write!(
            html,
            "</table></div><p class=\"note\">normalised by case kind: {}</p>",
            modes.join(" · ")
        );
    } else {
        html += "</table></div>";
    }
    html += "<p class=\"note\">The columns show each metric's mean; <i>normalised</i> and <i>beats untrained?</i> compare mean goodness, in which flicker, motion smoothness, subject and background consistency and boundary continuity count only as far as a clip moves (a still clip earns none of their credit). <i>unscaled</i>: the data is not 0.05 above the untrained model, or the floor or ceiling measured the metric on too few cases.</p>";
    html
}

/// The normalised and raw scores and every metric over training steps.
fn charts(
    trained: &[&Report],
    metrics: &std::collections::BTreeSet<&String>,
    floor: Option<&Report>,
    ceiling: Option<&Report>,
) -> String {
    let mut html = String::from("<h3>over training steps</h3><div class=\"charts\">");
    let norm: Vec<(u64, f64)> = trained
        .iter()
        .filter_map(|r| r.normalised_score().map(|v| (r.step.unwrap_or(0), v)))
        .collect();
    if !norm.is_empty() {
        html += &chart(
            "normalised score (0 = untrained, 1 = data)",
            &norm,
            &[("data", 1.0), ("untrained", 0.0)],
        );
    }
    let mut refs = Vec::new();
    if let Some(c) = ceiling {
        refs.push(("data", c.score));
    }
    if let Some(b) = floor {
        refs.push(("untrained", b.score));
    }
    let pts: Vec<(u64, f64)> = trained
        .iter()
        .map(|r| (r.step.unwrap_or(0), r.score))
        .collect();
    html += &chart("raw score (aggregate, higher is better)", &pts, &refs);
    for m in metrics {
        let pts: Vec<(u64, f64)> = trained
            .iter()
            .filter_map(|r| r.metrics.get(*m).map(|s| (r.step.unwrap_or(0), s.mean)))
            .filter(|p| p.1.is_finite())
            .collect();
        let mut refs = Vec::new();
        if let Some(v) = ceiling.and_then(|c| c.metrics.get(*m)) {
            refs.push(("data", v.mean));
        }
        if let Some(v) = floor.and_then(|c| c.metrics.get(*m)) {
            refs.push(("untrained", v.mean));
        }
        html += &chart(&format!("{m} ({})", direction(m)), &pts, &refs);
    }
    html += "</div>";
    html
}

/// Every scored source, checkpoints first (best first), then the references.
fn compare_table(
    reps: &[&(PathBuf, Report)],
    metrics: &std::collections::BTreeSet<&String>,
    best: Option<&Report>,
    rank: &dyn Fn(&Report) -> f64,
) -> String {
    let mut order: Vec<&Report> = reps.iter().map(|r| &r.1).collect();
    order.sort_by(|a, b| {
        is_reference(a)
            .cmp(&is_reference(b))
            .then(rank(b).total_cmp(&rank(a)))
    });
    let mut html = String::from(
        "<h3>comparison (checkpoints best first, then references)</h3><div class=\"scroll\"><table class=\"compare\"><tr><th>source</th><th>step</th><th>normalised</th><th>score</th><th>failed</th>",
    );
    for m in metrics {
        let _ = write!(html, "<th title=\"{}\">{}</th>", esc(m), esc(short(m)));
    }
    html += "</tr>";
    for r in &order {
        let cls = if best.is_some_and(|b| std::ptr::eq(b, *r)) {
            " class=\"best\""
        } else {
            ""
        };
        let _ = write!(
            html,
            "<tr{cls}><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td>",
            esc(&label(&r.source)),
            r.step.map_or("-".into(), |s| s.to_string()),
            num(r.normalised_score(), 3),
            r.score,
            r.failed
        );
        for m in metrics {
            let _ = write!(
                html,
                "<td>{}</td>",
                num(r.metrics.get(*m).map(|v| v.mean), 4)
            );
        }
        html += "</tr>";
    }
    html += "</table></div>";
    html
}

/// The checkpoint's clips, playable, each with its scores.
fn clips(dir: &Path, best: &Report) -> String {
    let mut html = format!(
        "<h3>clips of {} (best)</h3><div class=\"clips\">",
        esc(&label(&best.source))
    );
    for row in &best.rows {
        let _ = write!(
            html,
            "<div class=\"clip\"><p><b>{}</b> — {}</p>",
            esc(&row.case_id),
            esc(&row.status)
        );
        match row.video.as_ref().map(|v| std::fs::read(dir.join(v))) {
            Some(Ok(bytes)) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                let _ = write!(
                    html,
                    "<video controls loop preload=\"auto\" src=\"data:video/mp4;base64,{b64}\"></video>"
                );
            }
            Some(Err(e)) => {
                let _ = write!(html, "<p>clip missing: {}</p>", esc(&e.to_string()));
            }
            None => {
                let _ = write!(html, "<p>{}</p>", esc(row.reason.as_deref().unwrap_or("")));
            }
        }
        let _ = write!(
            html,
            "<p>{}</p><table>",
            esc(&row.prompt.chars().take(160).collect::<String>())
        );
        for (k, v) in &row.scores {
            let _ = write!(
                html,
                "<tr><td title=\"{}\">{}</td><td>{v:.4}</td></tr>",
                esc(k),
                esc(short(k))
            );
        }
        html += "</table></div>";
    }
    html += "</div>";
    html
}
