//! The picture in `src/lib.rs`, checked: imports between the crate's top-level modules run
//! one way (no cycle), ARI is read without knowing calls, the engine without knowing what
//! its output becomes, and `/forward` without touching ARI or the daemon.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the top-level modules its code (not its comments) names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules: BTreeSet<String> = std::fs::read_dir(&src)
        .expect("src")
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let module = name.strip_suffix(".rs").unwrap_or(&name).to_string();
            (module != "lib" && module != "main").then_some(module)
        })
        .collect();
    let mut graph = BTreeMap::new();
    for module in &modules {
        let mut files = Vec::new();
        collect_rust_files(&src.join(module), &mut files);
        collect_rust_files(&src.join(format!("{module}.rs")), &mut files);
        let mut named = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("source file");
            for line in text.lines().map(str::trim_start).filter(|line| !line.starts_with("//")) {
                for (at, _) in line.match_indices("crate::") {
                    let rest = &line[at + "crate::".len()..];
                    let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if &name != module && modules.contains(&name) {
                        named.insert(name);
                    }
                }
            }
        }
        graph.insert(module.clone(), named);
    }
    graph
}

fn collect_rust_files(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_file() && path.extension().is_some_and(|extension| extension == "rs") {
        files.push(path.to_path_buf());
    } else if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("dir").flatten() {
            collect_rust_files(&entry.path(), files);
        }
    }
}

/// Whether `to` is reachable from `from`.
fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let (mut seen, mut stack) = (BTreeSet::new(), vec![from.to_string()]);
    while let Some(module) = stack.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if next == to {
                return true;
            }
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    false
}

#[test]
fn imports_between_top_level_modules_form_no_cycle() {
    let graph = imports();
    assert!(graph.len() > 10, "the scan found the modules: {graph:?}");
    let cycles: Vec<String> = graph
        .iter()
        .flat_map(|(module, named)| named.iter().map(move |other| (module, other)))
        .filter(|(module, other)| reaches(&graph, other, module))
        .map(|(module, other)| format!("{module} -> {other} -> … -> {module}"))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn each_layer_knows_only_what_is_upstream_of_it() {
    let graph = imports();
    for (module, must_not_reach) in [
        ("ari", &["calls", "daemon", "deliver", "sinks", "recordings", "history", "forward"][..]),
        ("calls", &["daemon", "deliver", "sinks", "recordings", "history", "forward", "crm"][..]),
        ("numbers", &["ari", "calls", "forward", "history", "config"][..]),
    ] {
        for other in must_not_reach {
            assert!(!reaches(&graph, module, other), "{module} reaches {other}: {:?}", graph[module]);
        }
    }
    // /forward reads the call history (which knows calls), but never ARI or the daemon itself:
    // endpoint states and liveness come to it through `presence` and `health`.
    for other in ["ari", "daemon", "calls", "recordings", "deliver", "sinks"] {
        assert!(!graph["forward"].contains(other), "forward imports {other}: {:?}", graph["forward"]);
    }
}

#[test]
fn the_simulator_is_a_crate_of_its_own_that_the_daemon_uses_only_for_the_demo() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("crates/fake-ari/Cargo.toml")).expect("simulator manifest");
    let dependencies = manifest.split("[dependencies]").nth(1).expect("a [dependencies] table");
    assert!(
        !dependencies.lines().any(|line| line.trim_start().starts_with("deskhook")),
        "the simulator must not depend on deskhook: it is what deskhook is tested against"
    );
    let mut files = Vec::new();
    collect_rust_files(&root.join("src"), &mut files);
    let users: Vec<String> = files
        .iter()
        .filter(|file| std::fs::read_to_string(file).expect("source file").contains("fake_ari"))
        .map(|file| file.strip_prefix(root).unwrap_or(file).display().to_string())
        .collect();
    assert_eq!(users, vec!["src/commands/demo.rs".to_string()], "only `deskhook demo` runs the simulator");
}
