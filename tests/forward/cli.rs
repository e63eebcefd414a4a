//! The real `deskhook lookup` binary against a table config (no ARI anywhere).

use std::process::Command;

fn lookup(config: &std::path::Path, phone: &str) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_deskhook"))
        .args(["lookup", phone, "--trunk", "74951234567", "--config"])
        .arg(config)
        .env_remove("DESKHOOK_CONFIG")
        .output()
        .expect("run deskhook lookup");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn lookup_prints_each_resolver_and_exits_by_the_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = dir.path().join("managers.csv");
    std::fs::write(&table, "phone,extension,name\n+7 916 123-45-67,101,\"Petrov, Ivan\"\n").expect("write table");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[ari]\nurl = \"http://127.0.0.1:9\"\n[forward]\nbudget_ms = 1000\n\
             [[forward.resolvers]]\nkind = \"history\"\n[[forward.resolvers]]\nkind = \"table\"\npath = {:?}\n\
             [storage]\ndir = {:?}\n",
            table.display().to_string(),
            dir.path().join("storage").display().to_string()
        ),
    )
    .expect("write config");

    let (code, stdout, stderr) = lookup(&config, "89161234567");
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("phone 79161234567"), "{stdout}");
    assert!(stdout.contains("1. history") && stdout.contains("nobody"), "{stdout}");
    assert!(stdout.contains("2. table") && stdout.contains("found 101 \"Petrov, Ivan\""), "{stdout}");
    assert!(stdout.contains("answer: name=Petrov%2C%20Ivan&number=101  (from table)"), "{stdout}");

    let (code, stdout, _) = lookup(&config, "79160000000");
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("answer: nobody"), "{stdout}");

    let (code, _, stderr) = lookup(&config, "not a phone");
    assert_eq!(code, 1);
    assert!(stderr.contains("phone has a character"), "{stderr}");
}
