//! `sonora eval dashboard RUN_DIR`: one self-contained HTML page (no script, no network:
//! charts are inline SVG, clips are embedded MP4 data URIs, a Content-Security-Policy
//! forbids anything else) with, per suite, each metric over training steps (the untrained
//! baseline and the data ceiling as reference lines), a comparison table of every scored
//! source, and the best checkpoint's clips playable beside their scores.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::EvalError;
use crate::metric::lookup;
use crate::report::{Report, label};

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

/// Writes `<run>/eval/dashboard.html`; returns its path.
pub fn write_dashboard(run_dir: &Path) -> Result<PathBuf, EvalError> {
    let reports = find_reports(run_dir)?;
    let mut by_suite: BTreeMap<String, Vec<&(PathBuf, Report)>> = BTreeMap::new();
    for r in &reports {
        by_suite.entry(r.1.suite.clone()).or_default().push(r);
    }
    let mut html = String::from(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; media-src data:; img-src data:">
<title>sonora eval</title><style>
body{font:14px system-ui,sans-serif;margin:24px;color:#111}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:8px}.chart{margin:0}.clips{display:flex;flex-wrap:wrap;gap:16px}
.clip{width:260px}.clip video{width:256px;image-rendering:pixelated;background:#000}.clip p{margin:4px 0;font-size:12px}
.best{background:#ecfdf5}
</style></head><body>"#,
    );
    let _ = write!(
        html,
        "<h1>sonora eval — {}</h1>",
        esc(&run_dir.display().to_string())
    );
    for (suite, reps) in &by_suite {
        let _ = write!(
            html,
            "<section class=\"suite\"><h2>suite: {}</h2>",
            esc(suite)
        );
        let trained: Vec<&Report> = {
            let mut v: Vec<&Report> = reps
                .iter()
                .map(|r| &r.1)
                .filter(|r| !r.source.starts_with("data:") && !r.source.starts_with("untrained:"))
                .collect();
            v.sort_by_key(|r| r.step.unwrap_or(0));
            v
        };
        let ceiling = reps
            .iter()
            .map(|r| &r.1)
            .find(|r| r.source.starts_with("data:"));
        let baseline = reps
            .iter()
            .map(|r| &r.1)
            .find(|r| r.source.starts_with("untrained:"));
        // charts: the aggregate and every metric over steps
        let metrics: std::collections::BTreeSet<&String> =
            reps.iter().flat_map(|r| r.1.metrics.keys()).collect();
        html += "<div class=\"charts\">";
        let mut refs = Vec::new();
        if let Some(c) = ceiling {
            refs.push(("data", c.score));
        }
        if let Some(b) = baseline {
            refs.push(("untrained", b.score));
        }
        let pts: Vec<(u64, f64)> = trained
            .iter()
            .map(|r| (r.step.unwrap_or(0), r.score))
            .collect();
        html += &chart("score (aggregate, higher is better)", &pts, &refs);
        for m in &metrics {
            let dir = lookup(m).map_or("", |i| {
                if i.higher_is_better {
                    "higher is better"
                } else {
                    "lower is better"
                }
            });
            let pts: Vec<(u64, f64)> = trained
                .iter()
                .filter_map(|r| r.metrics.get(*m).map(|s| (r.step.unwrap_or(0), s.mean)))
                .filter(|p| p.1.is_finite())
                .collect();
            let mut refs = Vec::new();
            if let Some(v) = ceiling.and_then(|c| c.metrics.get(*m)) {
                refs.push(("data", v.mean));
            }
            if let Some(v) = baseline.and_then(|c| c.metrics.get(*m)) {
                refs.push(("untrained", v.mean));
            }
            html += &chart(&format!("{m} ({dir})"), &pts, &refs);
        }
        html += "</div>";
        // comparison table
        let mut order: Vec<&Report> = reps.iter().map(|r| &r.1).collect();
        order.sort_by(|a, b| b.score.total_cmp(&a.score));
        html += "<h3>comparison (best first)</h3><table><tr><th>source</th><th>step</th><th>score</th><th>failed</th>";
        for m in &metrics {
            let _ = write!(html, "<th>{}</th>", esc(m));
        }
        html += "</tr>";
        let best_trained = order
            .iter()
            .find(|r| !r.source.starts_with("data:") && !r.source.starts_with("untrained:"));
        for r in &order {
            let cls = if best_trained.is_some_and(|b| std::ptr::eq(*b, *r)) {
                " class=\"best\""
            } else {
                ""
            };
            let _ = write!(
                html,
                "<tr{cls}><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td>",
                esc(&label(&r.source)),
                r.step.map_or("-".into(), |s| s.to_string()),
                r.score,
                r.failed
            );
            for m in &metrics {
                match r.metrics.get(*m) {
                    Some(v) => {
                        let _ = write!(html, "<td>{:.4}</td>", v.mean);
                    }
                    None => html += "<td>-</td>",
                }
            }
            html += "</tr>";
        }
        html += "</table>";
        // the best trained checkpoint's clips
        if let Some(best) = best_trained
            && let Some((dir, _)) = reps.iter().find(|r| std::ptr::eq(&r.1, *best))
        {
            let _ = write!(
                html,
                "<h3>clips of {} (best)</h3><div class=\"clips\">",
                esc(&best.source)
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
                    let _ = write!(html, "<tr><td>{}</td><td>{v:.4}</td></tr>", esc(k));
                }
                html += "</table></div>";
            }
            html += "</div>";
        }
        html += "</section>";
    }
    html += "</body></html>\n";
    let p = run_dir.join("eval").join("dashboard.html");
    sonora_framework::fsutil::write_atomic(&p, html.as_bytes())
        .map_err(|e| EvalError::Invalid(format!("{}: {e}", p.display())))?;
    Ok(p)
}
