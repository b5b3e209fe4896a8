//! Natural-language captions of simulated scenes: several sentence plans, synonyms and
//! optional details (sound, walls, panel), all drawn from the clip's caption RNG, and
//! describing what actually happened (bounces, wall hits, collisions, rolling, occlusion).

use rand::Rng;
use rand::seq::IndexedRandom;

use super::config::SynthConfig;
use super::scene::{Scene, SceneObject};
use super::world::Simulation;

const NUMBERS: [&str; 11] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
];

fn pick<'a>(rng: &mut impl Rng, xs: &[&'a str]) -> &'a str {
    xs.choose(rng).copied().unwrap_or("")
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// What one object did, with the time each thing first happened.
#[derive(Clone, Debug, Default)]
struct Facts {
    floor_hits: Vec<f64>,
    wall_left: Option<f64>,
    wall_right: Option<f64>,
    /// `(time, other object)` for every object contact involving this object.
    collisions: Vec<(f64, usize)>,
    /// `(time, direction)` when it rolled or slid noticeably along the floor.
    rolled: Option<(f64, &'static str)>,
    /// `(time hidden, reappeared)` when it went behind the panel.
    hidden: Option<(f64, bool)>,
    tossed: bool,
    rests_at_end: bool,
}

fn facts(cfg: &SynthConfig, scene: &Scene, sim: &Simulation) -> Vec<Facts> {
    let n = scene.objects.len();
    let mut f = vec![Facts::default(); n];
    for c in &sim.contacts {
        let i = c.object as usize;
        match c.other.as_str() {
            "floor" => f[i].floor_hits.push(c.time_s),
            "wall_left" => {
                f[i].wall_left.get_or_insert(c.time_s);
            }
            "wall_right" => {
                f[i].wall_right.get_or_insert(c.time_s);
            }
            other => {
                if let Some(j) = other
                    .strip_prefix("object:")
                    .and_then(|j| j.parse::<usize>().ok())
                    && j < n
                {
                    f[i].collisions.push((c.time_s, j));
                    f[j].collisions.push((c.time_s, i));
                }
            }
        }
    }
    let sqrt_gh = (scene.gravity * cfg.height as f64).sqrt();
    for (i, o) in scene.objects.iter().enumerate() {
        let st = &sim.states[i];
        f[i].tossed = o.vel[1] < -0.2 * sqrt_gh;
        f[i].rests_at_end = st.last().is_some_and(|s| s.resting);
        if sim.floor_travel[i] > 0.15 * cfg.width as f64
            && let Some(k) = st.iter().position(|s| s.resting)
        {
            let dx = st.last().map_or(0.0, |s| s.pos[0]) - st[k].pos[0];
            f[i].rolled = Some((k as f64 / cfg.fps, if dx < 0.0 { "left" } else { "right" }));
        }
        if let Some(k) = sim.hidden[i].iter().position(|&h| h) {
            let back = sim.visible[i][k..].iter().any(|&v| v);
            f[i].hidden = Some((k as f64 / cfg.fps, back));
        }
    }
    f
}

struct Captioner<'a, R: Rng> {
    rng: &'a mut R,
    scene: &'a Scene,
    h: f64,
    /// The frame width when captions name each object's starting side (`caption_start`).
    side_of: Option<f64>,
    nouns: Vec<&'static str>,
    introduced: Vec<bool>,
    floor_said: bool,
    panel_said: bool,
    panel_noun: &'static str,
    pairs_said: Vec<(usize, usize)>,
}

impl<R: Rng> Captioner<'_, R> {
    fn floor_phrase(&mut self) -> String {
        if self.floor_said {
            return pick(self.rng, &["the floor", "the floor", "the ground"]).into();
        }
        self.floor_said = true;
        let opts: &[&str] = match self.scene.floor.name {
            "wood" => &[
                "a wooden floor",
                "wooden floorboards",
                "a hardwood floor",
                "a wood floor",
            ],
            "metal" => &["a metal floor", "a steel floor", "a sheet-metal floor"],
            "rubber" => &["a rubber floor", "a rubber mat", "a dark rubber floor"],
            "stone" => &["a stone floor", "stone tiles", "a flagstone floor"],
            "ice" => &["an icy floor", "a sheet of ice", "a frozen floor"],
            "glass" => &["a glass floor", "a glass surface", "a pane of glass"],
            _ => &["the floor"],
        };
        pick(self.rng, opts).into()
    }

    fn walls_phrase(&mut self) -> &'static str {
        let opts: &[&str] = match self.scene.wall.name {
            "wood" => &["wooden walls", "wood-panelled walls", "plank walls"],
            "metal" => &["metal walls", "steel walls", "riveted metal walls"],
            "rubber" => &["rubber walls", "padded rubber walls", "dark rubber walls"],
            "stone" => &["stone walls", "brick walls", "stone brick walls"],
            "ice" => &["icy walls", "walls of ice", "frozen walls"],
            "glass" => &["glass walls", "glass panes", "clear glass walls"],
            _ => &["plain walls"],
        };
        pick(self.rng, opts)
    }

    fn panel_phrase(&mut self) -> String {
        let p = self
            .scene
            .occluder
            .as_ref()
            .map_or("grey", |p| p.color_name);
        if self.panel_said {
            format!("the {}", self.panel_noun)
        } else {
            self.panel_said = true;
            format!("{} {p} {}", article(p), self.panel_noun)
        }
    }

    /// Full noun phrase on first mention ("a small red striped ball", with "on the left"
    /// when captions name the starting side), short after ("the red ball").
    fn np(&mut self, i: usize) -> String {
        let first = !self.introduced[i];
        let phrase = self.np_words(i);
        match self.side_of {
            Some(w) if first => {
                let x = self.scene.objects[i].pos[0] / w;
                let side = if x < 1.0 / 3.0 {
                    "on the left"
                } else if x > 2.0 / 3.0 {
                    "on the right"
                } else {
                    "in the middle"
                };
                format!("{phrase} {side}")
            }
            _ => phrase,
        }
    }

    /// [`Self::np`] without the starting side.
    fn np_words(&mut self, i: usize) -> String {
        let scene = self.scene;
        let o: &SceneObject = &scene.objects[i];
        let first = !self.introduced[i];
        self.introduced[i] = true;
        if let Some(ch) = &o.character {
            if !first {
                return ch.name.clone();
            }
            let k = self.rng.random_range(0..4);
            return match k {
                0 => ch.description.clone(),
                1 => format!("{} the {}", ch.name, ch.noun),
                2 => format!("{} the {} {}", ch.name, ch.color_name, ch.noun),
                _ => ch.name.clone(),
            };
        }
        let noun = self.nouns[i];
        if !first {
            let mut words = vec!["the"];
            // The colour may be dropped only when no other object has the same noun.
            let unique = (0..self.nouns.len()).all(|j| j == i || self.nouns[j] != noun);
            if !unique || self.rng.random_bool(0.85) {
                words.push(&o.color_name);
            }
            words.push(noun);
            return words.join(" ");
        }
        let mut words: Vec<String> = Vec::new();
        let rel = o.size / self.h;
        if self.rng.random_bool(0.5) {
            if rel < 0.075 {
                words.push(pick(self.rng, &["small", "little", "tiny"]).into());
            } else if rel > 0.11 {
                words.push(pick(self.rng, &["large", "big", "chunky"]).into());
            }
        }
        words.push(o.color_name.clone());
        if (o.texture != super::catalog::Texture::Plain || self.rng.random_bool(0.15))
            && self.rng.random_bool(0.85)
        {
            words.push(pick(self.rng, o.texture.adjectives()).into());
        }
        if self.rng.random_bool(0.4) {
            words.push(o.material.adjective.into());
        }
        words.push(noun.into());
        let phrase = words.join(" ");
        format!("{} {phrase}", article(&phrase))
    }

    /// The clauses describing object `i`, in time order, without the subject.
    fn clauses(&mut self, i: usize, f: &Facts, with_fall: bool) -> Vec<String> {
        let mut out: Vec<(f64, String)> = Vec::new();
        let is_ball = self.scene.objects[i].character.is_none()
            && self.scene.objects[i].shape == super::catalog::Shape::Ball;
        if let Some(&t0) = f.floor_hits.first() {
            if with_fall {
                if f.tossed {
                    let up = ["is tossed upward", "flies up", "is thrown up", "hops up"];
                    out.push((0.0, pick(self.rng, &up).into()));
                }
                let verb = if f.tossed {
                    pick(
                        self.rng,
                        &["falls back onto", "comes down on", "drops onto", "lands on"],
                    )
                } else {
                    pick(
                        self.rng,
                        &[
                            "falls onto",
                            "drops onto",
                            "tumbles down onto",
                            "lands on",
                            "falls to",
                        ],
                    )
                };
                let floor = self.floor_phrase();
                out.push((t0, format!("{verb} {floor}")));
            }
            let b = f.floor_hits.len() - 1;
            let s = match b {
                0 => pick(
                    self.rng,
                    &[
                        "stays put",
                        "comes to rest almost at once",
                        "barely bounces",
                        "lands with a single thud",
                    ],
                )
                .to_string(),
                1 => pick(
                    self.rng,
                    &["bounces once", "bounces a single time", "rebounds once"],
                )
                .to_string(),
                2 => pick(
                    self.rng,
                    &["bounces twice", "bounces two times", "bounces twice"],
                )
                .to_string(),
                3..=6 => match self.rng.random_range(0..3) {
                    0 => "bounces a few times".to_string(),
                    1 => format!("bounces {} times", NUMBERS[b]),
                    _ => format!("bounces {} times, each bounce lower", NUMBERS[b]),
                },
                _ => pick(
                    self.rng,
                    &[
                        "keeps bouncing",
                        "bounces again and again",
                        "bounces many times",
                        "bounces repeatedly",
                    ],
                )
                .to_string(),
            };
            out.push((t0 + 1e-6, s));
        } else if with_fall {
            out.push((
                0.0,
                pick(
                    self.rng,
                    &["falls", "drops through the air", "tumbles down"],
                )
                .into(),
            ));
        }
        let wall_adj = self.scene.wall.adjective;
        match (f.wall_left, f.wall_right) {
            (Some(a), Some(b)) => {
                let s = pick(
                    self.rng,
                    &[
                        "ricochets off both walls",
                        "bounces between the two walls",
                        "hits both side walls",
                    ],
                );
                out.push((a.min(b), s.into()));
            }
            (Some(t), None) | (None, Some(t)) => {
                let side = if f.wall_left.is_some() {
                    "left"
                } else {
                    "right"
                };
                let s = match self.rng.random_range(0..4) {
                    0 => format!("hits the {side} wall"),
                    1 => format!("bounces off the {side} wall"),
                    2 => format!("rebounds from the {wall_adj} wall on the {side}"),
                    _ => format!("knocks against the {side} wall"),
                };
                out.push((t, s));
            }
            (None, None) => {}
        }
        for &(t, j) in &f.collisions {
            let key = (i.min(j), i.max(j));
            if self.pairs_said.contains(&key) {
                continue;
            }
            self.pairs_said.push(key);
            let verb = pick(
                self.rng,
                &[
                    "collides with",
                    "bumps into",
                    "knocks into",
                    "crashes into",
                    "hits",
                ],
            );
            let other = self.np(j);
            out.push((t, format!("{verb} {other}")));
        }
        if let Some((t, dir)) = f.rolled {
            let s = if is_ball {
                match self.rng.random_range(0..3) {
                    0 => "rolls across the floor".to_string(),
                    1 => format!("rolls to the {dir}"),
                    _ => "rolls along the ground".to_string(),
                }
            } else {
                match self.rng.random_range(0..3) {
                    0 => "slides across the floor".to_string(),
                    1 => format!("slides to the {dir}"),
                    _ => "skids to a stop".to_string(),
                }
            };
            out.push((t, s));
        }
        if let Some((t, back)) = f.hidden {
            let panel = self.panel_phrase();
            let s = if t == 0.0 && back {
                let v = [
                    "emerges from behind",
                    "starts hidden behind",
                    "comes out from behind",
                ];
                format!("{} {panel}", pick(self.rng, &v))
            } else if t == 0.0 {
                format!(
                    "{} {panel}",
                    pick(self.rng, &["stays hidden behind", "is hidden behind"])
                )
            } else {
                let v = [
                    "disappears behind",
                    "passes behind",
                    "vanishes behind",
                    "is briefly hidden by",
                ];
                let verb = pick(self.rng, &v);
                let tail = if back {
                    let t = [
                        " and reappears",
                        " and comes out the other side",
                        " before reappearing",
                    ];
                    pick(self.rng, &t)
                } else {
                    ""
                };
                format!("{verb} {panel}{tail}")
            };
            out.push((t, s));
        }
        if f.rests_at_end && f.floor_hits.len() < 8 && self.rng.random_bool(0.35) {
            out.push((
                f64::MAX,
                pick(
                    self.rng,
                    &[
                        "comes to rest",
                        "lies still at the end",
                        "settles",
                        "stops moving",
                    ],
                )
                .into(),
            ));
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.into_iter().map(|(_, s)| s).collect()
    }

    fn join(&mut self, clauses: &[String]) -> String {
        match clauses {
            [] => pick(self.rng, &["hovers for a moment", "drifts"]).into(),
            [a] => a.clone(),
            [a, b] => {
                if b.starts_with("and ") {
                    format!("{a} {b}")
                } else {
                    let c = pick(self.rng, &[" and ", ", then ", " and then "]);
                    format!("{a}{c}{b}")
                }
            }
            _ => {
                let (last, rest) = clauses.split_last().expect("non-empty");
                let last = last.strip_prefix("and ").unwrap_or(last);
                let c = pick(
                    self.rng,
                    &[" and ", ", then ", ", and finally ", " and then "],
                );
                format!("{}{c}{last}", rest.join(", "))
            }
        }
    }

    fn sound_sentence(&mut self, facts: &[Facts]) -> String {
        let any_floor = facts.iter().any(|f| !f.floor_hits.is_empty());
        let words = if any_floor {
            self.scene.floor.sound_words
        } else {
            self.scene.objects[0].material.sound_words
        };
        let w = pick(self.rng, words);
        match self.rng.random_range(0..4) {
            0 => format!("Each impact makes {} {w}.", article(w)),
            1 => format!("The impacts sound like {} {w}.", article(w)),
            2 => format!("Every hit gives {} {w}.", article(w)),
            _ => format!("You hear {} {w} with each contact.", article(w)),
        }
    }
}

/// Writes a caption for a simulated scene, drawing every choice from `rng`.
pub(crate) fn caption(
    cfg: &SynthConfig,
    scene: &Scene,
    sim: &Simulation,
    rng: &mut impl Rng,
) -> String {
    let facts = facts(cfg, scene, sim);
    let n = scene.objects.len();
    let nouns = scene
        .objects
        .iter()
        .map(|o| pick(rng, o.shape.nouns()))
        .collect();
    let panel_noun = pick(rng, &["panel", "screen", "board"]);
    let mut c = Captioner {
        rng,
        scene,
        h: cfg.height as f64,
        side_of: cfg.caption_start.then_some(cfg.width as f64),
        nouns,
        introduced: vec![false; n],
        floor_said: false,
        panel_said: false,
        panel_noun,
        pairs_said: Vec::new(),
    };
    let mut sentences: Vec<String> = Vec::new();
    let opener = match c.rng.random_range(0..10) {
        0 => format!("In a room with {}, ", c.walls_phrase()),
        1 => format!("Against {}, ", c.walls_phrase()),
        2 => "Side view: ".to_string(),
        3 => "A static shot: ".to_string(),
        _ => String::new(),
    };
    if n == 0 {
        return format!(
            "{}an empty room.",
            if opener.is_empty() {
                "An empty room"
            } else {
                &opener
            }
        );
    }
    if n > 1 && c.rng.random_bool(0.45) {
        // Plan A: list the objects, then one sentence each.
        let nps: Vec<String> = (0..n).map(|i| c.np(i)).collect();
        let list = match nps.as_slice() {
            [a, b] => format!("{a} and {b}"),
            _ => {
                let (last, rest) = nps.split_last().expect("non-empty");
                format!("{} and {last}", rest.join(", "))
            }
        };
        let verb = pick(
            c.rng,
            &["fall onto", "drop onto", "tumble onto", "come down on"],
        );
        let floor = c.floor_phrase();
        let count = NUMBERS[n.min(10)];
        let first = match c.rng.random_range(0..3) {
            0 => format!("{count} objects {verb} {floor}: {list}"),
            1 => format!("{list} {verb} {floor}"),
            _ => format!("{count} things {verb} {floor} — {list}"),
        };
        let s = format!("{opener}{first}.");
        sentences.push(if opener.is_empty() || opener.ends_with(": ") {
            capitalize_after(&s, &opener)
        } else {
            s
        });
        for (i, f) in facts.iter().enumerate() {
            let cl = c.clauses(i, f, false);
            if cl.is_empty() {
                continue;
            }
            let subj = c.np(i);
            let body = c.join(&cl);
            sentences.push(format!("{} {body}.", capitalize(&subj)));
        }
    } else {
        // Plan B: one sentence per object, in order.
        for (i, f) in facts.iter().enumerate() {
            let mut subj = c.np(i);
            if subj.contains(", ") {
                subj.push(','); // close the appositive: "Pip, a small fox, falls …"
            }
            let cl = c.clauses(i, f, true);
            let body = c.join(&cl);
            let lead = if i == 0 {
                opener.clone()
            } else {
                pick(
                    c.rng,
                    &[
                        "",
                        "",
                        "Meanwhile, ",
                        "Next to it, ",
                        "Then ",
                        "At the same time, ",
                    ],
                )
                .to_string()
            };
            let s = format!("{lead}{subj} {body}.");
            sentences.push(if lead.is_empty() || lead.ends_with(": ") {
                capitalize_after(&s, &lead)
            } else {
                s
            });
        }
    }
    if scene.occluder.is_some() && !c.panel_said && c.rng.random_bool(0.6) {
        let p = c.panel_phrase();
        let s = match c.rng.random_range(0..3) {
            0 => format!("{} stands in the middle of the room.", capitalize(&p)),
            1 => format!("{} stands in front of the back wall.", capitalize(&p)),
            _ => format!("Part of the view is blocked by {p}."),
        };
        sentences.push(s);
    }
    if !sim.contacts.is_empty() && c.rng.random_bool(0.45) {
        let s = c.sound_sentence(&facts);
        sentences.push(s);
    }
    if opener.is_empty() && c.rng.random_bool(0.15) {
        let w = c.walls_phrase();
        sentences.push(format!("The room has {w}."));
    }
    sentences.join(" ")
}

/// Capitalises the first letter after `lead` (or the very first letter when `lead` is empty).
fn capitalize_after(s: &str, lead: &str) -> String {
    if lead.is_empty() {
        return capitalize(s);
    }
    format!("{lead}{}", capitalize(&s[lead.len()..]))
}
