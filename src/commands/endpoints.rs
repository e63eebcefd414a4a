//! `deskhook endpoints`: lists ARI endpoints with their class as deskhook sees them.

use std::io::Write;

use crate::ari::{AriClient, AriError, Endpoint};
use crate::calls::{ChannelClass, Classifier};
use crate::config::Config;

/// Prints the endpoint table; exit code 0, or 1 when ARI cannot be read or lists nothing.
pub fn endpoints(config: &Config) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("deskhook: cannot start the async runtime: {error}");
            return 1;
        }
    };
    let classifier = match Classifier::new(&config.pbx.extension_pattern, &config.pbx.trunks) {
        Ok(classifier) => classifier,
        Err(error) => {
            eprintln!("deskhook: config.toml: [pbx] extension_pattern: {error}");
            return 2;
        }
    };
    match runtime.block_on(list(config)) {
        Ok(endpoints) if endpoints.is_empty() => {
            eprintln!("deskhook: ARI lists no endpoints\n  fix: {}", NO_ENDPOINTS_FIX);
            1
        }
        Ok(endpoints) => {
            let mut out = std::io::stdout().lock();
            let _ = write_table(&mut out, &classifier, &endpoints);
            0
        }
        Err(error) => {
            eprintln!("deskhook: cannot list ARI endpoints: {error}\n  fix: {}", error.fix());
            1
        }
    }
}

/// What to do when ARI lists no endpoint at all.
pub(crate) const NO_ENDPOINTS_FIX: &str = "configure the phones and the trunk as PJSIP (or SIP/IAX2) endpoints \
     (`asterisk -rx \"pjsip show endpoints\"` must list them), then run this again";

async fn list(config: &Config) -> Result<Vec<Endpoint>, AriError> {
    let client = AriClient::new(&config.ari)?;
    match client.endpoints().await {
        Ok(endpoints) => Ok(endpoints),
        Err(error) => Err(client.diagnose(error, &config.ari).await),
    }
}

/// The class name shown for an endpoint resource.
pub(crate) fn class_name(classifier: &Classifier, resource: &str) -> &'static str {
    match classifier.endpoint(resource) {
        ChannelClass::Extension(_) => "extension",
        ChannelClass::Trunk(_) => "trunk",
        _ => "-",
    }
}

/// Extensions first, then trunks, then the rest; each by resource.
pub(crate) fn write_table(
    out: &mut impl Write,
    classifier: &Classifier,
    endpoints: &[Endpoint],
) -> std::io::Result<()> {
    let mut rows: Vec<(&'static str, &Endpoint)> =
        endpoints.iter().map(|endpoint| (class_name(classifier, &endpoint.resource), endpoint)).collect();
    let rank = |class: &str| match class {
        "extension" => 0,
        "trunk" => 1,
        _ => 2,
    };
    rows.sort_by(|a, b| (rank(a.0), &a.1.resource).cmp(&(rank(b.0), &b.1.resource)));
    writeln!(out, "{:<12} {:<24} {:<12} CLASS", "TECHNOLOGY", "RESOURCE", "STATE")?;
    for (class, endpoint) in rows {
        writeln!(out, "{:<12} {:<24} {:<12} {class}", endpoint.technology, endpoint.resource, endpoint.state)?;
    }
    Ok(())
}
