//! `deskhook check`: reaches everything the daemon needs and prints each problem with its fix.
//! Exit code (SPEC §1): 0 all good, 1 a problem found (2, an unusable config, is decided
//! before this runs).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::ari::client::subscribe_all_supported;
use crate::ari::websocket::{connect_events, EventStreamSettings};
use crate::ari::{AriClient, AriError};
use crate::calls::Classifier;
use crate::commands::endpoints::{class_name, write_table, NO_ENDPOINTS_FIX};
use crate::config::{redacted_url, Config, Destination, RecordingMode, SinkConfig};
use crate::daemon::resync::EndpointClasses;

/// Runs every check, printing to stdout; returns the exit code.
pub fn check(config: &Config) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("deskhook: cannot start the async runtime: {error}");
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    runtime.block_on(check_to(config, &mut out))
}

/// Collects results as lines: `ok`, `warning` (does not fail the check) and `PROBLEM` + `fix:`.
struct Report<'a, W: Write> {
    out: &'a mut W,
    problems: usize,
    warnings: usize,
}

impl<W: Write> Report<'_, W> {
    fn ok(&mut self, subject: &str, text: &str) {
        let _ = writeln!(self.out, "ok       {subject:<10} {text}");
    }

    fn detail(&mut self, text: &str) {
        let _ = writeln!(self.out, "         {:<11}{text}", "");
    }

    fn warning(&mut self, subject: &str, text: &str, fix: &str) {
        self.warnings += 1;
        let _ = writeln!(self.out, "warning  {subject:<10} {text}");
        let _ = writeln!(self.out, "         {:<11}fix: {fix}", "");
    }

    fn findings(&mut self, subject: &str, findings: Vec<crate::crm::probe::Finding>) {
        use crate::crm::probe::Finding;
        for finding in findings {
            match finding {
                Finding::Ok(text) => self.ok(subject, &text),
                Finding::Warning { text, fix } => self.warning(subject, &text, &fix),
                Finding::Problem { text, fix } => self.problem(subject, &text, &fix),
            }
        }
    }

    fn problem(&mut self, subject: &str, text: &str, fix: &str) {
        self.problems += 1;
        let _ = writeln!(self.out, "PROBLEM  {subject:<10} {text}");
        let _ = writeln!(self.out, "         {:<11}fix: {fix}", "");
    }
}

/// Runs every check, writing the report to `out`; returns the exit code.
pub(crate) async fn check_to(config: &Config, out: &mut impl Write) -> i32 {
    let mut report = Report { out, problems: 0, warnings: 0 };
    report.ok("config", "readable and valid");
    check_ari(config, &mut report).await;
    check_storage(&config.storage.dir, &mut report);
    check_shared_history(config, &mut report).await;
    check_recordings(config, &mut report);
    check_forward(config, &mut report).await;
    let allow = crate::config::allow::AllowList::parse(&config.forward.allow).unwrap_or_default();
    if let Some(warning) = crate::config::allow::exposure_warning(&config.forward.listen, &allow) {
        report.warning(
            "forward",
            &warning,
            "set [forward] allow to the addresses that may ask, or listen = \"127.0.0.1:8077\"",
        );
    }
    if let Some(warning) = crate::recordings::links::exposure_warning(&config.recordings) {
        report.warning(
            "recordings",
            &warning,
            "serve public_listen on 127.0.0.1 behind a TLS reverse proxy and set public_base_url to its https:// address",
        );
    }
    for sink in config.destinations() {
        match &sink.destination {
            Destination::Bitrix24(crm) => {
                let findings = crate::crm::probe::bitrix24(&sink.name, crm, &config.recordings).await;
                report.findings(&format!("sink {}", sink.name), findings);
            }
            Destination::Amocrm(crm) => {
                let findings = crate::crm::probe::amocrm(&sink.name, crm).await;
                report.findings(&format!("sink {}", sink.name), findings);
            }
            _ => check_sink(&sink, &mut report).await,
        }
    }
    let (problems, warnings) = (report.problems, report.warnings);
    let summary = match (problems, warnings) {
        (0, 0) => "everything deskhook needs is in place".to_string(),
        (0, w) => format!("no problem found ({w} warning{})", if w == 1 { "" } else { "s" }),
        (p, _) => format!("{p} problem{} found", if p == 1 { "" } else { "s" }),
    };
    let _ = writeln!(report.out, "{summary}");
    i32::from(problems > 0)
}

/// What answers at `url` when it is an HTTP server that is not Asterisk (whose answers say
/// `Server: Asterisk/…`).
async fn foreign_server(url: &str) -> Option<String> {
    // Asterisk's address, reached directly as the daemon does.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).no_proxy().build().ok()?;
    let response = http.get(format!("{}/ari/asterisk/info", url.trim_end_matches('/'))).send().await.ok()?;
    let server = response.headers().get(reqwest::header::SERVER)?.to_str().ok()?.trim().to_string();
    (!server.to_ascii_lowercase().starts_with("asterisk")).then_some(server)
}

async fn check_ari(config: &Config, report: &mut Report<'_, impl Write>) {
    let client = match AriClient::new(&config.ari) {
        Ok(client) => client,
        Err(error) => return report.problem("ARI", &error.to_string(), &error.fix()),
    };
    let where_ = redacted_url(&config.ari.url);
    let info = match client.asterisk_info().await {
        Ok(info) => info,
        Err(error) => {
            if let Some(server) = foreign_server(&config.ari.url).await {
                return report.problem(
                    "ARI",
                    &format!("{where_} is a web server, but not Asterisk's (it says Server: {server})"),
                    "point [ari] url at Asterisk's HTTP server: http.conf's bindaddr and bindport (8088 by default)",
                );
            }
            let error = client.diagnose(error, &config.ari).await;
            return report.problem("ARI", &format!("{where_}: {error}"), &error.fix());
        }
    };
    let version = &info.system.version;
    report.ok("ARI", &format!("{where_}: Asterisk {version}, up since {}", info.status.startup_time));
    if subscribe_all_supported(version) == Some(false) {
        report.problem(
            "ARI",
            &format!("Asterisk {version} is older than 13.6: its event websocket has no subscribeAll, so deskhook would see no ordinary calls"),
            "upgrade Asterisk to 13.6 or newer (any supported release: 18, 20, 22)",
        );
    }
    check_websocket(config, report).await;
    if config.recordings.mode == RecordingMode::Ari {
        match client.stored_recordings().await {
            Ok(stored) => report.ok(
                "recordings",
                &format!("ARI recording works here ({} stored recording(s) on Asterisk now)", stored.len()),
            ),
            Err(error) => report.problem(
                "recordings",
                &format!("[recordings] mode = \"ari\", but ARI's recordings resource answers: {error}"),
                "load Asterisk's recording modules: `asterisk -rx 'module load res_ari_recordings.so'` and \
                 `asterisk -rx 'module load res_stasis_recording.so'` (noload lines in modules.conf keep them off)",
            ),
        }
    }
    let endpoints = match client.endpoints().await {
        Ok(endpoints) => endpoints,
        Err(error) => return report.problem("endpoints", &error.to_string(), &error.fix()),
    };
    if endpoints.is_empty() {
        return report.problem("endpoints", "ARI lists no endpoints", NO_ENDPOINTS_FIX);
    }
    let Ok(classifier) = Classifier::new(&config.pbx.extension_pattern, &config.pbx.trunks) else {
        return report.problem("config", "[pbx] extension_pattern does not compile", "fix the regular expression");
    };
    let classes = EndpointClasses::of(&classifier, &endpoints);
    report.ok("endpoints", &classes.summary());
    let mut table = Vec::new();
    let _ = write_table(&mut table, &classifier, &endpoints);
    for line in String::from_utf8_lossy(&table).lines() {
        report.detail(line);
    }
    for trunk in &config.pbx.trunks {
        if !endpoints.iter().any(|endpoint| &endpoint.resource == trunk) {
            report.problem(
                "endpoints",
                &format!("[pbx] trunks names {trunk:?}, but ARI has no such endpoint"),
                "write the trunk's endpoint name as `deskhook endpoints` shows it in [pbx] trunks",
            );
        }
    }
    if classes.trunks.is_empty() {
        report.problem(
            "endpoints",
            "no endpoint is a trunk, so no call would count as incoming or outgoing",
            "list the carrier's endpoint(s) in [pbx] trunks",
        );
    }
    if classes.extensions.is_empty() {
        report.problem(
            "endpoints",
            &format!("no endpoint matches [pbx] extension_pattern {:?}", config.pbx.extension_pattern),
            "set [pbx] extension_pattern to match the operators' endpoint names",
        );
    }
    let unclassified: Vec<&str> = endpoints
        .iter()
        .filter(|endpoint| class_name(&classifier, &endpoint.resource) == "-")
        .map(|endpoint| endpoint.resource.as_str())
        .collect();
    if !unclassified.is_empty() {
        report.detail(&format!("(neither extension nor trunk, ignored in calls: {})", unclassified.join(", ")));
    }
}

async fn check_websocket(config: &Config, report: &mut Report<'_, impl Write>) {
    let settings = match EventStreamSettings::from_config(&config.ari) {
        Ok(settings) => settings,
        Err(error) => return report.problem("websocket", &error.to_string(), &error.fix()),
    };
    // A name of its own, so that a running daemon's subscription is not taken over.
    let probe_app = format!("{}-check", config.ari.app);
    match connect_events(&settings, &probe_app).await {
        Ok(mut socket) => {
            let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
            report.ok("websocket", "the event websocket accepts deskhook with subscribeAll");
        }
        Err(error) => {
            let error = match AriClient::new(&config.ari) {
                Ok(client) => client.diagnose(error, &config.ari).await,
                Err(_) => error,
            };
            let fix = match &error {
                AriError::NoAri { .. } | AriError::Status { .. } => {
                    format!("{}; the websocket also needs res_http_websocket.so loaded", error.fix())
                }
                _ => error.fix(),
            };
            report.problem("websocket", &format!("/ari/events: {error}"), &fix);
        }
    }
}

/// `forward.listen` is free (or the running deskhook's), and every resolver's file, URL or
/// token works; nothing is created anywhere.
async fn check_forward(config: &Config, report: &mut Report<'_, impl Write>) {
    use crate::config::ResolverConfig;
    let listen = &config.forward.listen;
    if !listen.is_empty() {
        match tokio::net::TcpListener::bind(listen).await {
            Ok(_) => report.ok("forward", &format!("{listen} is free for /forward")),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                match crate::daemon::state_lock::lock(&config.storage.dir) {
                    Err(crate::daemon::state_lock::LockError::Taken { .. }) => {
                        report.ok("forward", &format!("{listen} is served by the running deskhook"))
                    }
                    _ => report.problem(
                        "forward",
                        &format!("{listen} is in use by another program"),
                        "find it with `ss -ltnp` or pick another [forward] listen",
                    ),
                }
            }
            Err(error) => report.problem(
                "forward",
                &format!("cannot listen on {listen}: {error}"),
                "pick an address of this host in [forward] listen (or \"\" to turn /forward off)",
            ),
        }
    }
    let phones = crate::numbers::PhoneNormalizer::new(&config.forward.default_country);
    for (index, resolver) in config.forward.resolvers.iter().enumerate() {
        let label = format!("resolver {}", index + 1);
        match resolver {
            ResolverConfig::Table { path, .. } => match std::fs::read(path) {
                Ok(bytes) => match crate::forward::resolvers::table::parse_table(&bytes, &phones) {
                    Ok(table) if table.skipped.is_empty() => {
                        report.ok(&label, &format!("table {}: {} phones", path.display(), table.entries.len()))
                    }
                    Ok(table) => {
                        let shown: Vec<String> = table.skipped.iter().take(3).map(ToString::to_string).collect();
                        let more = table.skipped.len().saturating_sub(3);
                        report.problem(
                            &label,
                            &format!(
                                "table {}: {} phones, {} row(s) skipped: {}{}",
                                path.display(),
                                table.entries.len(),
                                table.skipped.len(),
                                shown.join("; "),
                                if more > 0 { format!("; and {more} more") } else { String::new() }
                            ),
                            "fix those lines (phone,extension[,name], comma-separated); the other rows are used",
                        )
                    }
                    Err(error) => report.problem(
                        &label,
                        &format!("table {}: {error}", path.display()),
                        "fix that line (phone,extension[,name], comma-separated); until then no table answers",
                    ),
                },
                Err(error) => report.problem(
                    &label,
                    &format!("table {} cannot be read: {error}", path.display()),
                    "create the file (phone,extension[,name] per line) readable by the deskhook user, or fix path",
                ),
            },
            ResolverConfig::History { .. } => report.ok(&label, "history: deskhook's own call history"),
            ResolverConfig::Bitrix24 { webhook_url, .. } => {
                let sink = crate::config::Bitrix24Sink {
                    auth: crate::config::Bitrix24Auth::Webhook { url: webhook_url.clone() },
                    users: Default::default(),
                    default_user: None,
                    crm_create: false,
                    add_to_chat: false,
                    show_cards: false,
                    rate_per_sec: crate::config::BITRIX24_RATE.0,
                    burst: crate::config::BITRIX24_RATE.1,
                    oauth_url: String::new(),
                };
                let off = crate::config::RecordingsConfig {
                    mode: RecordingMode::Off,
                    ..crate::config::RecordingsConfig::default()
                };
                let findings =
                    crate::crm::probe::bitrix24(&format!("forward.resolvers #{}", index + 1), &sink, &off).await;
                report.findings(&label, findings);
            }
            ResolverConfig::Amocrm { base_url, token, users, .. } => {
                let sink = crate::config::AmocrmSink {
                    base_url: base_url.clone(),
                    token: token.clone(),
                    users: users.clone(),
                    unsorted: false,
                    pipeline_id: None,
                    rate_per_sec: crate::config::AMOCRM_RATE.0,
                };
                let findings = crate::crm::probe::amocrm(&format!("forward.resolvers #{}", index + 1), &sink).await;
                report.findings(&label, findings);
            }
            ResolverConfig::Http { url, .. } => {
                let host = redacted_url(url);
                let probe = url.replace("{phone}", "70000000000").replace("{trunk}", "").replace("{callid}", "check");
                let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build();
                match http.map(|http| http.get(probe)) {
                    Ok(request) => match request.send().await {
                        Ok(response) if response.status().is_success() || response.status().as_u16() == 404 => report
                            .ok(&label, &format!("http lookup {host} answers (HTTP {})", response.status().as_u16())),
                        Ok(response) => report.problem(
                            &label,
                            &format!(
                                "http lookup {host} answered HTTP {} for a test number",
                                response.status().as_u16()
                            ),
                            "check the URL template and its token in [[forward.resolvers]] url",
                        ),
                        Err(_) => report.problem(
                            &label,
                            &format!("http lookup {host} is not reachable"),
                            "check the address, DNS and the firewall",
                        ),
                    },
                    Err(error) => report.problem(&label, &format!("cannot build an HTTP client: {error}"), "-"),
                }
            }
        }
    }
}

fn check_storage(dir: &Path, report: &mut Report<'_, impl Write>) {
    let shown = dir.display();
    if !dir.is_dir() {
        return report.problem(
            "storage",
            &format!("{shown} does not exist"),
            &format!(
                "create it for deskhook's user (`install -d -o deskhook -g deskhook -m 750 {shown}`); under systemd, \
                 StateDirectory=deskhook creates /var/lib/deskhook"
            ),
        );
    }
    match probe_writable(dir) {
        Ok(()) => report.ok("storage", &format!("{shown} is writable")),
        Err(error) => report.problem(
            "storage",
            &format!("{shown} is not writable ({error})"),
            &format!("make {shown} owned by the user deskhook runs as (`chown -R deskhook: {shown}`)"),
        ),
    }
}

/// `[storage] history = "postgres://…"`: connects as the daemon would, reads the schema
/// version and names the fix for the usual setup mistakes.
async fn check_shared_history(config: &Config, report: &mut Report<'_, impl Write>) {
    use crate::history::shared::{schema_version, SharedError, SCHEMA_VERSION};
    const PATIENCE: Duration = Duration::from_secs(10);
    let Some(url) = config.storage.shared_history() else {
        return;
    };
    let pbx = config.pbx_name();
    let store = match crate::history::SharedStore::new(url, &pbx, config.storage.history_timeout.get()) {
        Ok(store) => store,
        Err(problem) => {
            return report.problem(
                "history",
                &format!("storage.history {problem}"),
                "write it as postgres://user:password@host/database?sslmode=verify-full",
            )
        }
    };
    let target = store.target().describe();
    let fix = |error: &SharedError| {
        crate::history::advice::advice(error, store.target())
            .unwrap_or_else(|| "check the host, port, user, password and database in storage.history".to_string())
    };
    let client = match tokio::time::timeout(PATIENCE, store.connect()).await {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => {
            return report.problem("history", &format!("{target}: cannot connect ({error})"), &fix(&error))
        }
        Err(_) => {
            let error = SharedError::TimedOut(PATIENCE);
            return report.problem("history", &format!("{target}: {error}"), &fix(&error));
        }
    };
    match schema_version(&client).await {
        Ok(Some(SCHEMA_VERSION)) => {
            let counted = client
                .query_one("SELECT COUNT(*), COUNT(DISTINCT pbx) FROM deskhook_calls", &[])
                .await
                .and_then(|row| Ok((row.try_get::<_, i64>(0)?, row.try_get::<_, i64>(1)?)));
            report.ok(
                "history",
                &format!("{target}: shared call history, schema version {SCHEMA_VERSION}; this PBX writes as {pbx:?}"),
            );
            if let Ok((calls, pbxes)) = counted {
                report.detail(&format!("{calls} calls from {pbxes} PBX(es)"));
            }
        }
        Ok(Some(found)) if found > SCHEMA_VERSION => {
            let error = SharedError::SchemaNewer { found };
            report.problem(
                "history",
                &format!("{target}: {error}"),
                "run the same deskhook version on every PBX that shares this database",
            )
        }
        Ok(found) => {
            let may_create = client
                .query_one("SELECT has_schema_privilege(current_user, 'public', 'CREATE')", &[])
                .await
                .and_then(|row| row.try_get::<_, bool>(0))
                .unwrap_or(false);
            let now = found.map_or_else(|| "not created yet".to_string(), |found| format!("at version {found}"));
            if may_create {
                report.ok(
                    "history",
                    &format!(
                        "{target}: connected; deskhook's tables are {now}, `deskhook run` brings them to version \
                         {SCHEMA_VERSION}; this PBX writes as {pbx:?}"
                    ),
                );
            } else {
                report.problem(
                    "history",
                    &format!(
                        "{target}: deskhook's tables are {now} and role {:?} may not create them",
                        store.target().user()
                    ),
                    &format!(
                        "GRANT CREATE ON SCHEMA public TO {} (or make the role the database's owner)",
                        store.target().user()
                    ),
                );
            }
        }
        Err(error) => report.problem("history", &format!("{target}: {error}"), &fix(&error)),
    }
}

fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".deskhook-check-{}", std::process::id()));
    std::fs::write(&probe, b"check")?;
    std::fs::remove_file(&probe)
}

fn check_recordings(config: &Config, report: &mut Report<'_, impl Write>) {
    if config.recordings.mode != RecordingMode::Mixmonitor {
        return;
    }
    for dir in &config.recordings.dirs {
        let shown = dir.display();
        match std::fs::read_dir(dir) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => report.problem(
                "recordings",
                &format!("{shown} does not exist"),
                "set [recordings] dirs to where MixMonitor writes (FreePBX: /var/spool/asterisk/monitor)",
            ),
            Err(error) => report.problem(
                "recordings",
                &format!("{shown} is not readable ({error})"),
                "let deskhook's user read Asterisk's recordings: `adduser deskhook asterisk` (the package does it \
                 when the group exists), then `systemctl restart deskhook`, and group read permission on the directory",
            ),
            Ok(_) if config.recordings.delete_after_upload && probe_writable(dir).is_err() => report.problem(
                "recordings",
                &format!("{shown} is readable but not writable, and [recordings] delete_after_upload = true"),
                &format!(
                    "give the asterisk group write access to {shown} and add ReadWritePaths={shown} to the \
                     systemd unit, or set delete_after_upload = false"
                ),
            ),
            Ok(_) => report.ok("recordings", &format!("{shown} is readable")),
        }
    }
}

/// Reaches each destination; for Zammad also proves the token (a request Zammad refuses before
/// it records anything: an unknown event).
async fn check_sink(sink: &SinkConfig, report: &mut Report<'_, impl Write>) {
    let label = format!("sink {}", sink.name);
    let url = sink.url();
    if url.is_empty() {
        return report.warning(
            &label,
            "[helpdesk] webhook_url is empty: events are only logged",
            "paste the helpdesk's Asterisk webhook address into [helpdesk] webhook_url",
        );
    }
    let host = sink.host();
    if url.starts_with("http://") {
        report.warning(
            &label,
            &format!("{host} is plain http: the address's secret path and the calls travel unencrypted"),
            "use the https:// address the destination shows",
        );
    }
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(http) => http,
        Err(error) => return report.warning(&label, &format!("cannot build an HTTP client: {error}"), "-"),
    };
    let zammad = matches!(sink.destination, Destination::Zammad { .. });
    let probe = if zammad {
        // Refused before anything is recorded: a wrong token answers 401, a disabled
        // integration 422 "Feature is disabled", a working one 422 for the unknown event.
        http.post(url)
            .header("Accept", "application/json")
            .json(&serde_json::json!({"event": "deskhookCheck", "callId": "deskhook-check", "direction": "in"}))
    } else {
        // A GET creates nothing; any HTTP answer proves the address is reachable.
        http.get(url)
    };
    let response = match probe.send().await {
        Ok(response) => response,
        Err(error) => {
            let chain = crate::ari::client::error_chain(&error);
            let name = reqwest::Url::parse(url).ok().and_then(|url| url.host_str().map(str::to_string));
            return match name.filter(|_| chain.contains("dns error")) {
                Some(name) => report.warning(
                    &label,
                    &format!("cannot resolve {name}: the name is unknown to this host's DNS"),
                    "check the spelling of the address and /etc/resolv.conf; requests wait in the outbox meanwhile",
                ),
                None => report.warning(
                    &label,
                    &format!("{host} is not reachable: {chain}"),
                    "check the firewall and any proxy between this host and the destination; requests wait in \
                         the outbox meanwhile",
                ),
            };
        }
    };
    let status = response.status().as_u16();
    if !zammad {
        // A GET creates nothing. The helpdesk's webhook answers it 2xx or 405 (POST only): any
        // other 4xx means the address (or the token in it) is not one it knows. A JSON receiver
        // may refuse a bodiless GET (400, 415, …); only 401/403/404/410 say the address is wrong.
        let wrong_address = match sink.destination {
            Destination::Omnidesk => (400..=499).contains(&status) && status != 405,
            _ => matches!(status, 401 | 403 | 404 | 410),
        };
        return match status {
            _ if wrong_address => report.problem(
                &label,
                &format!("{host} answered HTTP {status} for the {} sink's address", sink.kind()),
                "copy the address again from the destination (a wrong path or a deleted token answers 404/401/403)",
            ),
            500..=599 => report.warning(
                &label,
                &format!("{host} answered HTTP {status}: the destination has trouble right now"),
                "requests wait in the outbox and are retried; look again later",
            ),
            _ => report.ok(&label, &format!("{} sink: {host} is reachable (HTTP {status})", sink.kind())),
        };
    }
    let body = response.text().await.unwrap_or_default();
    match status {
        401 => report.problem(
            &label,
            &format!("Zammad at {host} refuses the token in [sinks.{}] url (HTTP 401)", sink.name),
            "copy the endpoint Zammad shows under Admin → Integrations → CTI (Generic) into url",
        ),
        422 if body.contains("disable") => report.problem(
            &label,
            &format!("Zammad at {host} has its generic CTI integration switched off"),
            "switch it on under Admin → Integrations → CTI (Generic)",
        ),
        422 => report.ok(&label, &format!("Zammad at {host} accepts the token (generic CTI is on)")),
        other => report.problem(
            &label,
            &format!("{host} answered HTTP {other} where Zammad's CTI endpoint would answer 422"),
            "check that url is Zammad's https://HOST/api/v1/cti/TOKEN",
        ),
    }
}
