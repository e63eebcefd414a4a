//! Engine throughput: every fixture trace parsed from its raw JSON lines and replayed through
//! the call engine, next to a baseline that only parses the same lines into `serde_json::Value`.
//!
//! `cargo bench --bench engine`; criterion reports elements (ARI events) per second.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use deskhook::ari::events::EventParser;
use deskhook::calls::Engine;
use deskhook::config::Config;

fn fixture_lines() -> (Vec<String>, Config) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traces");
    let config = Config::load(&dir.join("busy-stretch.toml")).expect("fixture config");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".jsonl") && !name.ends_with(".expected.jsonl") && !name.starts_with("probe")
        })
        .collect();
    names.sort();
    let mut lines = Vec::new();
    for path in names {
        let text = std::fs::read_to_string(&path).expect("trace");
        lines.extend(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string));
    }
    (lines, config)
}

fn bench(c: &mut Criterion) {
    let (lines, config) = fixture_lines();
    let settings = deskhook::daemon::engine_settings(&config, false).expect("settings");
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.sample_size(20);
    group.bench_function("parse_only_serde_json_value", |b| {
        b.iter(|| {
            let mut count = 0usize;
            for line in &lines {
                let value: serde_json::Value = serde_json::from_str(line).expect("json");
                count += value.as_object().map_or(0, |o| o.len());
            }
            black_box(count)
        })
    });
    group.bench_function("parse_and_replay", |b| {
        b.iter(|| {
            let mut parser = EventParser::new();
            let mut engine = Engine::new(settings.clone());
            let mut out = Vec::with_capacity(1024);
            for line in &lines {
                if let Ok(event) = parser.parse(line) {
                    engine.handle(&event, &mut out);
                }
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
