//! Opening the user's browser: `$BROWSER` first (as git and Python do), then the platform's
//! opener (the `open` crate). The caller always prints the URL too, so a headless machine or a
//! browser that silently fails never leaves the user stuck.

use std::process::{Command, Stdio};

use tracing::debug;

/// Tries to open `url`; returns how, or `None` when nothing worked.
pub fn open(url: &str) -> Option<String> {
    if let Ok(list) = std::env::var("BROWSER") {
        let sep = if cfg!(windows) { ';' } else { ':' };
        for entry in list.split(sep).map(str::trim).filter(|e| !e.is_empty()) {
            if run_browser_command(entry, url) {
                return Some(format!("$BROWSER ({entry})"));
            }
        }
    }
    match open::that_detached(url) {
        Ok(()) => Some("the system browser".into()),
        Err(e) => {
            debug!(error = %e, "could not open a browser");
            None
        }
    }
}

/// Runs one `$BROWSER` entry: `%s` is replaced by the URL, otherwise the URL is the last
/// argument. No shell is involved, so the URL's `&` and `?` need no quoting.
fn run_browser_command(entry: &str, url: &str) -> bool {
    let mut words: Vec<String> = entry.split_whitespace().map(str::to_string).collect();
    if words.iter().any(|w| w.contains("%s")) {
        for w in &mut words {
            *w = w.replace("%s", url);
        }
    } else {
        words.push(url.to_string());
    }
    let (prog, args) = words.split_first().expect("entry is not empty");
    match Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(_) => true,
        Err(e) => {
            debug!(browser = %prog, error = %e, "$BROWSER entry failed");
            false
        }
    }
}
