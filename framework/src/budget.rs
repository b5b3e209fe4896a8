//! Memory budgets: commands that allocate from numbers a user typed (clip sizes, model
//! widths) estimate what they will need first and refuse, naming the estimate and the
//! keys to change, above a limit. The limit is `SONORA_MEMORY_LIMIT_GB` when set (a user
//! with a bigger machine, or a smaller share of one, says so there), else 90% of the
//! machine's memory (`MemTotal` in `/proc/meminfo`; 64 GiB where that cannot be read).

/// Bytes in a GiB.
const GIB: f64 = (1u64 << 30) as f64;

/// The environment variable that sets the limit, in GiB.
pub const LIMIT_ENV: &str = "SONORA_MEMORY_LIMIT_GB";

/// The memory limit in bytes and where it came from.
pub fn limit() -> Result<(u128, String), String> {
    if let Ok(v) = std::env::var(LIMIT_ENV) {
        let gb: f64 = v
            .trim()
            .parse()
            .ok()
            .filter(|g: &f64| g.is_finite() && *g > 0.0)
            .ok_or_else(|| format!("{LIMIT_ENV}={v:?}: expected a positive number of GiB"))?;
        return Ok(((gb * GIB) as u128, format!("{LIMIT_ENV}={v}")));
    }
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<u128>().ok())
        })
        .map(|kb| kb * 1024);
    Ok(match total {
        Some(b) => (b * 9 / 10, "90% of this machine's memory".into()),
        None => (64 << 30, "the default 64 GiB".into()),
    })
}

/// `Ok` when `bytes` fits the limit; else an error saying that `what` would need about
/// that much and which `keys` make it smaller.
pub fn check(what: &str, bytes: u128, keys: &str) -> Result<(), String> {
    let (lim, from) = limit()?;
    if bytes <= lim {
        return Ok(());
    }
    Err(format!(
        "{what} would need about {} GiB, above the memory limit of {:.1} GiB ({from}); make {keys} smaller, or raise the limit with {LIMIT_ENV}",
        human(bytes),
        lim as f64 / GIB
    ))
}

/// A byte count in GiB, readable however large.
fn human(bytes: u128) -> String {
    let g = bytes as f64 / GIB;
    if g < 1e6 {
        format!("{g:.1}")
    } else {
        format!("{g:.2e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_fits_and_huge_is_refused_with_the_keys_named() {
        assert!(check("a clip", 1 << 20, "synth.width").is_ok());
        let e = check("a clip", 7 << 40, "synth.width, synth.height").unwrap_err();
        assert!(e.contains("about 7168.0 GiB"), "{e}");
        assert!(
            e.contains("synth.width, synth.height") && e.contains(LIMIT_ENV),
            "{e}"
        );
    }
}
