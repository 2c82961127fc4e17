//! What ships beside the binaries: `--version` naming the protocol, and the generated completions
//! and man pages in `dist/` loading in the tools that read them. (That they match the code is
//! checked by the `dist_files` test of the `securestore` binary.)

use std::path::{Path, PathBuf};
use std::process::Command;

use securestore_e2e::bin;
use securestore_proto::handshake::PROTOCOL_VERSION;

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist")
}

#[test]
fn version_names_the_protocol() {
    for name in ["securestore", "securestored"] {
        for flag in ["--version", "-V"] {
            let out = Command::new(bin(name)).arg(flag).output().expect("run");
            assert!(out.status.success(), "{name} {flag}");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!(
                    "{name} {} (protocol {PROTOCOL_VERSION})\n",
                    env!("CARGO_PKG_VERSION")
                ),
                "{name} {flag}"
            );
        }
    }
}

#[test]
fn bash_loads_the_completion_and_completes_subcommands() {
    let script = dist().join("completions/securestore.bash");
    // Loads the script, then asks it what follows `securestore pro` and `securestore project `.
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$1" || exit 9
               complete -p securestore || exit 8
               COMP_WORDS=(securestore pro); COMP_CWORD=1; COMP_LINE="securestore pro"; COMP_POINT=${#COMP_LINE}
               _securestore securestore pro securestore; echo "first: ${COMPREPLY[*]}"
               COMP_WORDS=(securestore project ""); COMP_CWORD=2; COMP_LINE="securestore project "; COMP_POINT=${#COMP_LINE}
               _securestore securestore "" project; echo "second: ${COMPREPLY[*]}""#,
        )
        .arg("bash")
        .arg(&script)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("-F _securestore securestore"), "{stdout}");
    assert!(stdout.contains("first: project"), "{stdout}");
    for action in ["add", "remove", "list"] {
        let second = stdout
            .lines()
            .find(|line| line.starts_with("second:"))
            .unwrap_or_default();
        assert!(
            second.split_whitespace().any(|word| word == action),
            "{stdout}"
        );
    }
}

#[test]
fn the_man_pages_render_without_warnings() {
    let Ok(probe) = Command::new("groff").arg("--version").output() else {
        // groff-base is on Debian by default (man-db needs it); without it there is nothing to run.
        eprintln!("groff is not installed; the man pages were not rendered");
        return;
    };
    assert!(probe.status.success());
    let pages: Vec<_> = std::fs::read_dir(dist().join("man"))
        .expect("dist/man")
        .map(|entry| entry.expect("entry").path())
        .collect();
    assert!(pages.len() > 1, "{pages:?}");
    for page in pages {
        let out = Command::new("groff")
            // Plain text (no overstrike), and wide enough that the footer with the version is not
            // overprinted by a long page name.
            .args(["-man", "-Tutf8", "-ww", "-P-cbou", "-rLL=120n"])
            .arg(&page)
            .output()
            .expect("run groff");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{}: {stderr}",
            page.display()
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("NAME"), "{}: {text}", page.display());
        assert!(
            text.contains(&format!("(protocol {PROTOCOL_VERSION})")),
            "{}: {text}",
            page.display()
        );
    }
}

/// Whether `tool` runs here; zsh and fish are not on every machine (Debian: apt-get install zsh fish).
fn installed(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        eprintln!("{tool} is not installed; its completion was not checked");
    }
    found
}

#[test]
fn zsh_parses_the_completion() {
    if !installed("zsh") {
        return;
    }
    let out = Command::new("zsh")
        .arg("-n")
        .arg(dist().join("completions/_securestore"))
        .output()
        .expect("run zsh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fish_loads_the_completion_and_completes_subcommands() {
    if !installed("fish") {
        return;
    }
    let out = Command::new("fish")
        .arg("-c")
        .arg(r#"source $argv[1]; and complete -C "securestore project ""#)
        .arg(dist().join("completions/securestore.fish"))
        .output()
        .expect("run fish");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offered: Vec<_> = stdout
        .lines()
        .filter_map(|line| line.split('\t').next())
        .collect();
    for action in ["add", "remove", "list"] {
        assert!(offered.contains(&action), "{stdout}");
    }
}
