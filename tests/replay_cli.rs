//! `deskhook replay` as a user runs it: the real binary on the real traces.

mod common;

use std::process::Command;

use common::*;

fn deskhook() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deskhook"));
    command.env_remove("DESKHOOK_CONFIG");
    command
}

#[test]
fn replay_prints_exactly_the_expected_lines_for_every_trace() {
    for name in scenarios() {
        let output = deskhook()
            .arg("replay")
            .arg("--config")
            .arg(fixtures().join("lab.toml"))
            .arg(fixtures().join(format!("{name}.jsonl")))
            .output()
            .expect("deskhook runs");
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8(output.stdout).expect("utf-8");
        let got: Vec<serde_json::Value> =
            stdout.lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect();
        let want = expected_values(&name);
        assert_eq!(got, want, "{name}:\n{}", diff(&got, &want));
        // Field order is part of the format (SPEC §5).
        for line in stdout.lines() {
            assert!(line.starts_with("{\"status\":"), "{line}");
        }
    }
}

#[test]
fn replay_works_without_any_config() {
    let output =
        deskhook().arg("replay").arg(fixtures().join("07-out-answered.jsonl")).output().expect("deskhook runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Defaults: every non-extension endpoint is a trunk; recordings off; the system zone.
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stdout.contains("\"status\":\"outgoing call start\",\"from_user\":\"101\",\"to_user\":\"89161234567\""));
}

#[test]
fn a_damaged_trace_names_the_line_and_still_prints_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::new();
    for (index, line) in trace_lines("02-in-direct-noanswer-callercancel").iter().enumerate() {
        text.push_str(if index == 3 { &line[..20] } else { line });
        text.push('\n');
    }
    let path = dir.path().join("damaged.jsonl");
    std::fs::write(&path, text).expect("write");
    let output =
        deskhook().args(["replay", "--config"]).arg(fixtures().join("lab.toml")).arg(&path).output().expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("damaged.jsonl:4: not valid ARI JSON"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 3);
}

#[test]
fn an_unreadable_trace_exits_1_with_a_reason() {
    let output = deskhook().args(["replay", "/nonexistent/trace.jsonl"]).output().expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read trace /nonexistent/trace.jsonl"));
}

#[test]
fn a_bad_config_is_named_by_section_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[pbx]\ntimezone = \"Mars/Olympus\"\n").expect("write");
    let output = deskhook()
        .args(["replay", "--config"])
        .arg(&path)
        .arg(fixtures().join("01-in-direct-answered.jsonl"))
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("config.toml: [pbx] timezone: unknown time zone \"Mars/Olympus\""), "{stderr}");
}
