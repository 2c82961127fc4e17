//! The `securestore` command-line tool: a short session and every exit code.

use std::process::Output;

use securestore_e2e::{Daemon, PROJECT, bin, run_with_stdin};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

/// One line on stderr, besides the warning a value on the command line draws (see `trust`).
fn one_line(text: &str) {
    let lines = text
        .lines()
        .filter(|line| !line.starts_with("securestore: warning: a value on the command line"));
    assert_eq!(lines.count(), 1, "one line on stderr, got: {text:?}");
}

#[test]
fn set_get_delete_session() {
    let daemon = Daemon::start();
    let run = |args: &[&str]| {
        daemon
            .cli()
            .arg("--project")
            .arg(PROJECT)
            .args(args)
            .output()
            .expect("run")
    };

    let out = run(&["set", "api-token", "t0k3n"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        out.stdout.is_empty() && stderr(&out).lines().all(|l| l.contains("warning")),
        "set is silent on success, but for the warning about a value on the command line"
    );

    let out = run(&["get", "api-token"]);
    assert_eq!(
        (code(&out), stdout(&out).as_str()),
        (0, "t0k3n\n"),
        "value and one newline"
    );

    let out = run(&["--service", "other", "get", "api-token"]);
    assert_eq!(code(&out), 1, "another service has no such item");
    one_line(&stderr(&out));

    assert_eq!(code(&run(&["delete", "api-token"])), 0);
    let out = run(&["get", "api-token"]);
    assert_eq!(code(&out), 1, "get of a missing item exits 1");
    assert!(out.stdout.is_empty());
    assert_eq!(
        code(&run(&["delete", "api-token"])),
        0,
        "deleting a missing item succeeds"
    );
}

#[test]
fn value_from_stdin_and_accessible_class() {
    let daemon = Daemon::start();
    let mut set = daemon.cli();
    set.args([
        "--project",
        PROJECT,
        "set",
        "from-stdin",
        "--accessible",
        "AFTER_FIRST_UNLOCK",
    ]);
    let out = run_with_stdin(&mut set, b"secret from a pipe\n");
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let out = daemon
        .cli()
        .args(["--project", PROJECT, "get", "from-stdin"])
        .output()
        .expect("run");
    assert_eq!(
        stdout(&out),
        "secret from a pipe\n",
        "one trailing newline dropped on input"
    );

    let mut set = daemon.cli();
    set.args(["--project", PROJECT, "set", "multi"]);
    assert_eq!(code(&run_with_stdin(&mut set, b"line1\nline2\n\n")), 0);
    let out = daemon
        .cli()
        .args(["--project", PROJECT, "get", "multi"])
        .output()
        .expect("run");
    assert_eq!(
        stdout(&out),
        "line1\nline2\n\n",
        "only one newline is dropped"
    );

    let mut set = daemon.cli();
    set.args(["--project", PROJECT, "set", "bin"]);
    let out = run_with_stdin(&mut set, &[0xff, 0xfe]);
    assert_eq!(code(&out), 2, "non-UTF-8 input is invalid");
    one_line(&stderr(&out));

    let out = daemon
        .cli()
        .args([
            "--project",
            PROJECT,
            "set",
            "k",
            "v",
            "--accessible",
            "SOMETIMES",
        ])
        .output()
        .expect("run");
    assert_eq!(code(&out), 2, "unknown class is a usage error");
}

#[test]
fn project_from_the_environment() {
    let daemon = Daemon::start();
    let out = daemon
        .cli()
        .env("SECURESTORE_PROJECT", "@env/project")
        .args(["set", "k", "from-env"])
        .output()
        .expect("run");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = daemon
        .cli()
        .args(["--project", "@env/project", "get", "k"])
        .output()
        .expect("run");
    assert_eq!(stdout(&out), "from-env\n");
}

#[test]
fn exit_codes_for_each_failure() {
    let daemon = Daemon::start_with(&["--max-value-bytes", "4"]);
    let run = |args: &[&str]| daemon.cli().args(args).output().expect("run");

    // 2: invalid input of every kind, each with one line on stderr.
    for args in [
        &["--project", PROJECT, "set", "bad key", "v"][..],
        &["--project", PROJECT, "get", ""],
        &["--project", "bad project", "get", "k"],
        &["--project", PROJECT, "set", "k", "too long"],
        &["--project", PROJECT, "--service", "", "get", "k"],
        &["get", "k"],
    ] {
        let out = run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        one_line(&stderr(&out));
    }
    let out = run(&["--project", PROJECT, "set", "k", "12345"]);
    assert!(
        stderr(&out).contains("4 bytes"),
        "names the limit: {}",
        stderr(&out)
    );
    let out = run(&["--project", PROJECT, "set", "bad key", "v"]);
    assert!(
        stderr(&out).contains("Invalid key provided to SecureStore"),
        "{}",
        stderr(&out)
    );

    // 2: usage errors from the parser; 0 for --help.
    assert_eq!(code(&run(&["--project", PROJECT, "frobnicate"])), 2);
    assert_eq!(code(&run(&["--project", PROJECT, "get"])), 2);
    assert_eq!(code(&run(&["--help"])), 0);

    // 4: nobody listening.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(bin("securestore"))
        .arg("--socket")
        .arg(dir.path().join("nobody.sock"))
        .args(["--project", PROJECT, "get", "k"])
        .output()
        .expect("run");
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    one_line(&stderr(&out));
    assert!(
        stderr(&out).contains("nobody.sock"),
        "names the socket: {}",
        stderr(&out)
    );
}

#[test]
fn list_contains_clear_and_conditional_sets_from_the_command_line() {
    let daemon = Daemon::start();
    let cli = || {
        let mut cmd = daemon.cli();
        cmd.arg("--project").arg(PROJECT);
        cmd
    };
    let run = |args: &[&str]| cli().args(args).output().expect("run");
    let run_in = |args: &[&str], stdin: &str| run_with_stdin(cli().args(args), stdin.as_bytes());

    assert_eq!(code(&run_in(&["set", "b"], "1\n")), 0);
    assert_eq!(code(&run_in(&["set", "a"], "say \"hi\"\n")), 0);
    assert_eq!(code(&run_in(&["--service", "other", "set", "c"], "x")), 0);

    assert_eq!(code(&run(&["contains", "a"])), 0);
    let out = run(&["contains", "zzz"]);
    assert_eq!(code(&out), 1, "contains of a missing item exits 1");
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "and says nothing"
    );

    let out = run(&["list"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "a\nb\n"));
    let out = run(&["list", "--json"]);
    assert_eq!(stdout(&out), "[\"a\",\"b\"]\n");
    let out = run(&["list", "--services"]);
    assert_eq!(stdout(&out), "app\nother\n");
    let out = run(&["get", "a", "--json"]);
    assert_eq!(
        stdout(&out),
        "{\"key\":\"a\",\"service\":\"app\",\"value\":\"say \\\"hi\\\"\",\"accessible\":\"WHEN_UNLOCKED\"}\n"
    );

    // Conditional sets: the expected value comes from a file or stdin, never the command line.
    let out = run_in(&["set", "b", "--if-absent"], "2");
    assert_eq!(code(&out), 6, "b exists: {}", stderr(&out));
    let expected = daemon.dir.path().join("expected");
    std::fs::write(&expected, "1\n").expect("write");
    let expected = expected.to_str().expect("utf-8");
    let out = run_in(&["set", "b", "--if-equals-file", expected], "2");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = run_in(&["set", "b", "--if-equals-file", expected], "3");
    assert_eq!(code(&out), 6, "b is 2 now");
    let out = run_in(&["set", "b", "--if-equals-file", "-", "3"], "2\n");
    assert_eq!(code(&out), 0, "expected on stdin: {}", stderr(&out));
    let out = run_in(&["delete", "b", "--if-equals-file", "-"], "2");
    assert_eq!(code(&out), 6, "b is 3");
    let out = run_in(&["delete", "b", "--if-equals-file", "-"], "3");
    assert_eq!(code(&out), 0);
    assert_eq!(code(&run_in(&["set", "fresh", "--if-absent"], "v")), 0);

    let out = run(&["clear"]);
    assert_eq!(code(&out), 2, "clear needs --yes");
    assert_eq!(code(&run(&["contains", "a"])), 0, "nothing was cleared");
    let out = run(&["clear", "--yes"]);
    assert_eq!(
        (code(&out), stdout(&out).as_str()),
        (0, "2\n"),
        "a and fresh"
    );
    let out = run(&["clear", "--all-services", "--yes"]);
    assert_eq!(
        (code(&out), stdout(&out).as_str()),
        (0, "1\n"),
        "c in other"
    );
    assert_eq!(stdout(&run(&["list", "--services"])), "");
}

/// `securestore watch` prints each durable change of its project as a line, flushed as it comes,
/// with names only: never a value, never another project's change.
#[tokio::test]
async fn watch_prints_each_change_as_it_becomes_durable() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::Duration;

    use securestore_client::{DeleteOptions, SetOptions};

    let daemon = Daemon::start();
    for json in [false, true] {
        let mut watch = daemon.cli();
        watch.args(["--project", PROJECT, "watch"]);
        if json {
            watch.arg("--json");
        }
        let mut child = watch
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn watch");
        // Lines arrive on a thread, so a missing one fails the test instead of hanging it.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mine = daemon.client(PROJECT).await;
        let other = daemon.client("@tests/other").await;
        // Until the watcher is registered nothing is printed: set a probe until it shows.
        let mut seen = Vec::new();
        for _ in 0..100 {
            mine.set_item("probe", "probe-secret", SetOptions::default())
                .await
                .expect("set");
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
                seen.push(line);
                break;
            }
        }
        assert!(!seen.is_empty(), "watch printed nothing");
        other
            .set_item("elsewhere", "other-secret", SetOptions::default())
            .await
            .expect("set");
        mine.set_item("token", "secret-value-1", SetOptions::default())
            .await
            .expect("set");
        mine.delete_item("token", DeleteOptions::default())
            .await
            .expect("delete");
        while !seen.iter().any(|l| l.contains("delete")) {
            seen.push(
                lines
                    .recv_timeout(Duration::from_secs(20))
                    .expect("the delete is printed"),
            );
        }
        let _ = child.kill();
        let _ = child.wait();
        for line in &seen {
            assert!(!line.contains("secret"), "no value in {line:?}");
            assert!(
                !line.contains("elsewhere"),
                "no other project's change in {line:?}"
            );
        }
        let (set, delete) = if json {
            (
                r#""kind":"set","service":"app","key":"token""#,
                r#""kind":"delete","service":"app","key":"token""#,
            )
        } else {
            (" set app token", " delete app token")
        };
        let set_at = seen.iter().position(|l| l.contains(set));
        let delete_at = seen.iter().position(|l| l.contains(delete));
        assert!(
            matches!((set_at, delete_at), (Some(s), Some(d)) if s < d),
            "set then delete of token, in order: {seen:?}"
        );
    }
}
