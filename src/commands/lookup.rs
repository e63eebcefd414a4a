//! `deskhook lookup PHONE [--trunk T]` (SPEC §1): runs the `/forward` resolver chain once,
//! without the cache, and prints what each resolver said, how long it took, and the answer
//! `/forward` would give. Works without ARI: presence is unknown, so nothing is skipped.

use std::io::Write;
use std::time::Duration;

use crate::config::Config;
use crate::forward::chain::Outcome;
use crate::forward::ForwardService;
use crate::health::Health;
use crate::history::History;
use crate::presence::Presence;

/// Runs the subcommand; returns the process exit code (0 found, 1 not found or unusable).
pub fn lookup(config: &Config, phone: &str, trunk: Option<&str>) -> i32 {
    // Resolver warnings (a broken table, a missing history) belong on stderr next to the answer.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("deskhook lookup: cannot start the async runtime: {error}");
            return 1;
        }
    };
    let history = open_history(config);
    let service = match ForwardService::new(config, Presence::new(), history, Health::new()) {
        Ok(service) => service,
        Err(error) => {
            eprintln!("deskhook lookup: {error}");
            return 1;
        }
    };
    let diagnosis = match runtime.block_on(service.diagnose(phone, trunk.unwrap_or_default())) {
        Ok(diagnosis) => diagnosis,
        Err(reason) => {
            eprintln!("deskhook lookup: {reason}");
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "phone {} (as given: {phone:?}), trunk {:?}, budget {} ms",
        diagnosis.phone,
        trunk.unwrap_or_default(),
        diagnosis.budget.as_millis()
    );
    if diagnosis.steps.is_empty() {
        let _ = writeln!(out, "  no resolvers configured: add [[forward.resolvers]] to the config");
    }
    for (index, step) in diagnosis.steps.iter().enumerate() {
        let said = match &step.outcome {
            Outcome::Found(answer) => format!("found {} {:?}", answer.number, answer.name),
            Outcome::Unavailable(answer) => {
                format!("found {} {:?}, but it is offline (skipped)", answer.number, answer.name)
            }
            Outcome::Nobody => "nobody".to_string(),
            Outcome::Failed(error) => format!("failed: {error}"),
            Outcome::TimedOut => "timed out".to_string(),
        };
        let late = if step.within_budget { "" } else { " (after the budget: /forward would not wait for it)" };
        let _ = writeln!(out, "  {}. {:<9} {:>9}  {said}{late}", index + 1, step.kind, millis(step.elapsed));
    }
    match &diagnosis.answer {
        Some(answer) => {
            let body = String::from_utf8_lossy(&answer.body()).into_owned();
            let _ = writeln!(out, "answer: {body}  (from {})", answer.resolver);
            0
        }
        None => {
            let _ = writeln!(out, "answer: nobody (empty body: the call takes its normal route)");
            1
        }
    }
}

/// The call history, when a `history` resolver wants it and `storage.dir` has or can take it.
fn open_history(config: &Config) -> Option<History> {
    let wanted = config.forward.resolvers.iter().any(|resolver| resolver.kind() == "history");
    if !wanted {
        return None;
    }
    match History::configured(config) {
        Ok(history) => Some(history),
        Err(error) => {
            eprintln!("deskhook lookup: {error}; the history resolver will find nobody");
            None
        }
    }
}

fn millis(elapsed: Duration) -> String {
    format!("{:.1} ms", elapsed.as_secs_f64() * 1000.0)
}
