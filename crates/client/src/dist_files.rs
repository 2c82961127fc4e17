//! The files in `dist/` made from `securestore`'s clap definitions: shell completions (bash, zsh,
//! fish) in `dist/completions/` and one man page per command in `dist/man/`.
//!
//! They are checked in, so packagers and users need no build step, and the test below regenerates
//! them in memory and fails when a checked-in file differs, is missing or is left over: CI
//! (`cargo test --workspace --locked`) keeps them in step with the code. After changing a command,
//! a flag or a doc comment in `main.rs`, regenerate them with [`REGENERATE`].

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use clap_complete::{Generator as _, Shell};

/// Set to rewrite `dist/` instead of comparing.
const REGENERATE_ENV: &str = "SECURESTORE_REGENERATE";

/// The one command that rewrites the generated files.
const REGENERATE: &str =
    "SECURESTORE_REGENERATE=1 cargo test -p securestore-client --bin securestore dist_files";

/// The folders under `dist/` this generator owns entirely.
const OWNED: [&str; 2] = ["completions", "man"];

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist")
}

/// Every generated file, by its path under `dist/`.
fn generate() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut script = Vec::new();
        clap_complete::generate(
            shell,
            &mut super::Args::command(),
            "securestore",
            &mut script,
        );
        files.insert(
            Path::new("completions").join(shell.file_name("securestore")),
            script,
        );
    }
    // As `clap_mangen::generate_to` does: `help` is the page itself, not a command of its own.
    let mut command = super::Args::command().disable_help_subcommand(true);
    command.build();
    // Every page names the tool's version (subcommands have none of their own).
    let source = format!("securestore {}", *super::VERSION);
    man_pages(command, &source, &mut files);
    files
}

/// The man page of `command`, and of each of its visible subcommands, e.g. `securestore-set.1`.
fn man_pages(command: clap::Command, source: &str, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        man_pages(sub.clone(), source, files);
    }
    let man = clap_mangen::Man::new(command).source(source);
    let mut page = Vec::new();
    man.render(&mut page).expect("render a man page in memory");
    files.insert(Path::new("man").join(man.get_filename()), page);
}

/// The files now in the folders this generator owns, by their path under `dist/`.
fn checked_in(dist: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for folder in OWNED {
        let Ok(entries) = fs::read_dir(dist.join(folder)) else {
            continue;
        };
        for entry in entries {
            let entry = entry.expect("read a dist/ entry");
            found.push(Path::new(folder).join(entry.file_name()));
        }
    }
    found
}

#[test]
fn dist_files_match_the_cli() {
    let dist = dist();
    let generated = generate();
    if std::env::var_os(REGENERATE_ENV).is_some() {
        for stale in checked_in(&dist)
            .into_iter()
            .filter(|p| !generated.contains_key(p))
        {
            fs::remove_file(dist.join(&stale)).expect("remove a stale generated file");
        }
        for (path, bytes) in &generated {
            let path = dist.join(path);
            fs::create_dir_all(path.parent().expect("a folder")).expect("create a dist/ folder");
            fs::write(&path, bytes).expect("write a generated file");
        }
        return;
    }
    let mut problems = Vec::new();
    for (path, bytes) in &generated {
        match fs::read(dist.join(path)) {
            Ok(found) if found == *bytes => {}
            Ok(_) => problems.push(format!("dist/{} differs", path.display())),
            Err(_) => problems.push(format!("dist/{} is missing", path.display())),
        }
    }
    for path in checked_in(&dist) {
        if !generated.contains_key(&path) {
            problems.push(format!(
                "dist/{} is no longer generated (a command was removed or renamed)",
                path.display()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the completions and man pages in dist/ do not match securestore's clap definitions:\n  {}\n\
         regenerate them (and commit the result) with:\n  {REGENERATE}",
        problems.join("\n  ")
    );
}

#[test]
fn every_command_has_a_man_page_and_the_version_names_the_protocol() {
    let generated = generate();
    for page in [
        "securestore.1",
        "securestore-set.1",
        "securestore-get.1",
        "securestore-project-add.1",
    ] {
        assert!(
            generated.contains_key(&Path::new("man").join(page)),
            "no {page} among {:?}",
            generated.keys().collect::<Vec<_>>()
        );
    }
    let top = String::from_utf8(generated[&Path::new("man").join("securestore.1")].clone())
        .expect("a man page is text");
    let protocol = format!(
        "(protocol {})",
        securestore_proto::handshake::PROTOCOL_VERSION
    );
    assert!(top.contains(&protocol), "{top}");
}
