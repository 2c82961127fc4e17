//! The daemon's per-connection request loop (`crates/daemon/src/requests.rs`) against a hostile or
//! unlucky raw client: cancels for ids it never saw, duplicate ids, deadlines already past, a client
//! that half-closes right after a burst, one that reads its answers late, SIGTERM with requests
//! waiting, and the request budget after all of that.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use securestore_e2e::{
    Daemon, PROJECT, cancel_frame, encode_request, frame, poll_frame, raw_hello,
};
use securestore_proto::handshake::{Hello, HelloReply};
use securestore_proto::tarpc::Response;
use securestore_proto::{
    GetOptions as WireGet, SecureStoreRequest, SecureStoreResponse, SetOptions as WireSet,
    WatchFilter,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const LIMIT: usize = 1 << 20;

async fn bound_stream(daemon: &Daemon) -> UnixStream {
    let (reply, frames) = raw_hello(&daemon.socket(), &Hello::project(PROJECT, None)).await;
    assert!(matches!(reply, HelloReply::Accepted(_)), "{reply:?}");
    frames.into_inner()
}

/// The next answer, or `None` at the end of the stream.
async fn next_response(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Option<Response<SecureStoreResponse>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.expect("answer body");
    Some(securestore_proto::codec::decode(&body, LIMIT).expect("decode answer"))
}

async fn read_response(stream: &mut UnixStream) -> Response<SecureStoreResponse> {
    tokio::time::timeout(Duration::from_secs(20), next_response(stream))
        .await
        .expect("an answer within 20 s")
        .expect("an answer, not the end of the stream")
}

fn set_frame(id: u64, key: &str, value: &str, deadline: Duration) -> Vec<u8> {
    let message = SecureStoreRequest::SetItem {
        key: key.to_owned(),
        value: value.into(),
        options: WireSet::default(),
    };
    frame(&encode_request(id, message, deadline))
}

fn get_frame(id: u64, key: &str) -> Vec<u8> {
    let message = SecureStoreRequest::GetItem {
        key: key.to_owned(),
        options: WireGet::default(),
    };
    frame(&encode_request(id, message, Duration::from_secs(10)))
}

/// Opens a watcher on `stream` (request id `id`) of `key` (every key if `None`) and returns its id.
async fn watcher(stream: &mut UnixStream, id: u64, key: Option<&str>) -> u64 {
    let watch = SecureStoreRequest::Watch {
        filter: WatchFilter {
            service: None,
            key: key.map(str::to_owned),
        },
    };
    stream
        .write_all(&frame(&encode_request(id, watch, Duration::from_secs(10))))
        .await
        .expect("watch");
    let answer = read_response(stream).await;
    assert_eq!(answer.request_id, id);
    let Ok(SecureStoreResponse::Watch(Ok(watcher))) = answer.message else {
        panic!("watch: {:?}", answer.message);
    };
    watcher
}

fn is_refusal(answer: &Response<SecureStoreResponse>, word: &str) -> bool {
    answer
        .message
        .as_ref()
        .is_err_and(|e| e.detail.contains(word))
}

/// The value a get answer carries, if it carries one.
fn got_value(answer: &Response<SecureStoreResponse>) -> Option<String> {
    match &answer.message {
        Ok(SecureStoreResponse::GetItem(Ok(Some(item)))) => {
            Some(item.value.expose_secret().to_owned())
        }
        _ => None,
    }
}

/// Stores a 60 KiB value under "big".
async fn set_big(client: &securestore_client::Client) {
    client
        .set_item(
            "big",
            "y".repeat(60 * 1024).as_str(),
            securestore_client::SetOptions::default(),
        )
        .await
        .expect("set");
}

/// Stores a 60 KiB value under "big" (on a connection closed again), then binds a raw stream:
/// the one slot's holder in the tests below.
async fn big_value_then_a_bound_stream(daemon: &Daemon) -> UnixStream {
    {
        let client = daemon.client(PROJECT).await;
        set_big(&client).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    bound_stream(daemon).await
}

/// A new client connects and reads "big" whole within 10 s, though a stopped client holds the
/// daemon's only slot.
async fn assert_a_newcomer_is_served(daemon: &Daemon) {
    let newcomer = tokio::time::timeout(Duration::from_secs(10), async {
        let client = securestore_client::Client::connect(daemon.socket(), PROJECT).await?;
        client
            .get_item("big", securestore_client::GetOptions::default())
            .await
    })
    .await;
    let served = matches!(&newcomer, Ok(Ok(Some(v))) if v.expose_secret().len() == 60 * 1024);
    assert!(
        served,
        "the newcomer was not served: the stopped client kept the only slot ({:?})",
        newcomer.map(|r| r.map(|v| v.map(|v| v.expose_secret().len())))
    );
}

/// A set whose frame costs the whole request budget (the per-connection share is raised to one
/// frame, then capped at the whole budget): it is read only once no byte of the budget is held by
/// anyone. So it answering proves no earlier frame's grant was left behind.
async fn whole_budget_set(daemon: &Daemon, id: u64) {
    let mut stream = bound_stream(daemon).await;
    let value = "x".repeat(64 * 1024);
    stream
        .write_all(&set_frame(id, "big", &value, Duration::from_secs(10)))
        .await
        .expect("big set");
    let answer = tokio::time::timeout(Duration::from_secs(10), next_response(&mut stream))
        .await
        .expect("a frame costing the whole budget is read once every grant is back: budget leaked")
        .expect("an answer");
    assert!(
        matches!(answer.message, Ok(SecureStoreResponse::SetItem(Ok(())))),
        "{:?}",
        answer.message
    );
}

/// Every kind of frame that does not become a request holding its grant to the end (cancels for
/// unknown, finished and waiting ids, refused duplicates, throttled sets, requests already past their
/// deadline, inline gets) gives its share of the budget back: afterwards a frame costing the whole
/// budget is still read, with the connection that sent them all still open.
#[tokio::test]
async fn no_frame_leaks_its_share_of_the_budget() {
    let daemon = Daemon::start_logging(
        &[
            "--max-request-bytes",
            "65536",
            "--max-request-bytes-per-connection",
            "65536",
            "--max-in-flight",
            "1",
            "--frame-timeout-ms",
            "1000",
        ],
        "securestore_daemon=debug",
    );
    whole_budget_set(&daemon, 1).await;

    let mut stream = bound_stream(&daemon).await;
    let watcher = watcher(&mut stream, 1, Some("never")).await;
    let mut next_id = 10u64;
    for round in 0..40u64 {
        let mut burst = Vec::new();
        // A poll that waits (it holds the one place), and a duplicate of it.
        let poll = next_id;
        burst.extend(poll_frame(poll, watcher, Duration::from_secs(20)));
        burst.extend(poll_frame(poll, watcher, Duration::from_secs(20)));
        // Throttled: the poll holds the one place.
        burst.extend(set_frame(next_id + 1, "t", "v", Duration::from_secs(10)));
        // Cancels for ids never sent, and for the waiting poll (twice).
        for unknown in 0..20 {
            burst.extend(cancel_frame(1_000_000 + round * 100 + unknown));
        }
        burst.extend(cancel_frame(poll));
        burst.extend(cancel_frame(poll));
        // A get, a set already past its deadline, a cancel of the throttled set.
        burst.extend(get_frame(next_id + 2, "k"));
        burst.extend(set_frame(next_id + 3, "late", "v", Duration::ZERO));
        burst.extend(cancel_frame(next_id + 1));
        next_id += 10;
        stream.write_all(&burst).await.expect("burst");
        // The duplicate, the throttled set and the get are always answered; the poll is
        // cancelled (unanswered); the late set may be answered or dropped.
        let mut seen = 0;
        while seen < 3 {
            let answer = tokio::time::timeout(Duration::from_secs(5), next_response(&mut stream))
                .await
                .unwrap_or_else(|_| panic!("round {round}: only {seen} answers\n{}", daemon.log()))
                .expect("answer");
            // A late set, of this round or an earlier one.
            if answer.request_id % 10 == 3 {
                continue;
            }
            seen += 1;
        }
    }
    // Connections that pay for a frame and then fail: garbage after a valid get, a frame cut off
    // by the peer leaving, a frame left half-sent (closed by the frame timeout).
    let mut garbage = bound_stream(&daemon).await;
    let mut bytes = get_frame(1, "k");
    bytes.extend(frame(&[0xff; 40]));
    garbage.write_all(&bytes).await.expect("garbage");
    let mut cut = bound_stream(&daemon).await;
    let mut half = 60_000u32.to_be_bytes().to_vec();
    half.extend_from_slice(&[0u8; 100]);
    cut.write_all(&half).await.expect("half a frame");
    let mut stuck = bound_stream(&daemon).await;
    stuck.write_all(&half).await.expect("half a frame");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(cut);
    assert!(
        tokio::time::timeout(Duration::from_secs(15), async {
            let mut buf = [0u8; 1024];
            while garbage.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            while stuck.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        })
        .await
        .is_ok(),
        "the garbage and the stuck connections are closed"
    );
    // Let a late set that was not dropped be answered before checking.
    tokio::time::sleep(Duration::from_millis(300)).await;
    whole_budget_set(&daemon, 2).await;
    // The hostile connection is still served.
    stream
        .write_all(&get_frame(next_id, "k"))
        .await
        .expect("get");
    loop {
        let answer = read_response(&mut stream).await;
        if answer.request_id == next_id {
            break;
        }
    }
    daemon.assert_serving().await;
}

/// An id already waiting is refused; once it is cancelled the same id may be used again, and the new
/// request can itself be cancelled: the first one's end must not take the second one's cancel handle
/// with it.
#[tokio::test]
async fn a_reused_id_after_a_cancel_is_a_new_request_that_can_be_cancelled() {
    let daemon = Daemon::start_with(&["--max-in-flight", "2"]);
    let mut stream = bound_stream(&daemon).await;
    let watcher = watcher(&mut stream, 1, None).await;
    let long = Duration::from_secs(20);

    // 5 waits; a second 5 is refused.
    let mut burst = poll_frame(5, watcher, long);
    burst.extend(poll_frame(5, watcher, long));
    stream.write_all(&burst).await.expect("polls");
    let answer = read_response(&mut stream).await;
    assert_eq!(answer.request_id, 5);
    assert!(is_refusal(&answer, "already under way"), "{answer:?}");

    // Cancel 5 and reuse 5 in the same burst, then cancel the new 5 as well: both places are free
    // again, so two new polls both wait (neither throttled).
    let mut burst = cancel_frame(5);
    burst.extend(poll_frame(5, watcher, long));
    burst.extend(cancel_frame(5));
    burst.extend(poll_frame(6, watcher, long));
    burst.extend(poll_frame(7, watcher, long));
    stream
        .write_all(&burst)
        .await
        .expect("cancel, reuse, cancel");
    // Nothing comes for 5, 6 or 7 until an event: a throttled answer would come now.
    let early = tokio::time::timeout(Duration::from_millis(500), next_response(&mut stream)).await;
    assert!(
        early.is_err(),
        "an answer came before any event (a place was not freed): {early:?}"
    );
    let mut burst = cancel_frame(6);
    burst.extend(cancel_frame(7));
    burst.extend(get_frame(8, "k"));
    stream.write_all(&burst).await.expect("cancels, get");
    let answer = read_response(&mut stream).await;
    assert_eq!(answer.request_id, 8, "{answer:?}");
    daemon.assert_serving().await;
}

/// A client that sends a burst of pipelined sets and gets and at once closes its writing side gets
/// every answer, and every get sees the set sent before it on the same connection.
#[tokio::test]
async fn a_burst_then_a_half_close_gets_every_answer_and_reads_its_own_writes() {
    let daemon = Daemon::start();
    let stream = bound_stream(&daemon).await;
    const PAIRS: u64 = 400;
    let mut burst = Vec::new();
    for i in 0..PAIRS {
        let key = format!("k{i}");
        burst.extend(set_frame(
            2 * i,
            &key,
            &format!("v{i}"),
            Duration::from_secs(30),
        ));
        burst.extend(get_frame(2 * i + 1, &key));
    }
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(&burst).await.expect("burst");
        write.shutdown().await.expect("half-close");
        write
    });
    let mut answers = HashMap::new();
    loop {
        let mut len = [0u8; 4];
        match tokio::time::timeout(Duration::from_secs(30), read.read_exact(&mut len)).await {
            Err(_) => panic!("no answer nor end within 30 s; {} answers", answers.len()),
            Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        read.read_exact(&mut body).await.expect("body");
        let answer: Response<SecureStoreResponse> =
            securestore_proto::codec::decode(&body, LIMIT).expect("decode");
        assert!(
            answers.insert(answer.request_id, answer).is_none(),
            "answered twice"
        );
    }
    let _write = writer.await.expect("writer");
    let throttled = answers
        .values()
        .filter(|a| is_refusal(a, "throttled"))
        .count();
    println!("{} answers, {throttled} throttled", answers.len());
    assert_eq!(answers.len() as u64, 2 * PAIRS, "every request answered");
    for i in 0..PAIRS {
        let set_ok = matches!(
            answers[&(2 * i)].message,
            Ok(SecureStoreResponse::SetItem(Ok(())))
        );
        let get = &answers[&(2 * i + 1)];
        if set_ok && !is_refusal(get, "throttled") {
            assert_eq!(
                got_value(get),
                Some(format!("v{i}")),
                "get {i} missed the set before it: {get:?}"
            );
        }
    }
}

/// A set already past its deadline when the daemon decodes it is not run: never applied, never
/// answered; the connection goes on and the get pipelined after each set is answered.
#[tokio::test]
async fn a_deadline_already_past_does_not_stall_the_connection() {
    let daemon = Daemon::start();
    let mut stream = bound_stream(&daemon).await;
    let (mut answered, mut applied) = (0, 0);
    for i in 0..50u64 {
        let mut burst = set_frame(3 * i, "late", &format!("v{i}"), Duration::ZERO);
        burst.extend(get_frame(3 * i + 1, "late"));
        stream.write_all(&burst).await.expect("burst");
        loop {
            let answer = read_response(&mut stream).await;
            // A late set's answer (this round's, or an earlier one's that came after its get).
            if answer.request_id % 3 == 0 {
                answered += 1;
                continue;
            }
            assert_eq!(answer.request_id, 3 * i + 1, "{answer:?}");
            if got_value(&answer) == Some(format!("v{i}")) {
                applied += 1;
            }
            break;
        }
    }
    println!("50 sets past their deadline: {answered} answered, {applied} applied");
    // Past its deadline when decoded, a request is not run: never applied, never answered.
    assert_eq!((answered, applied), (0, 0));
    daemon.assert_serving().await;
}

/// SIGTERM while requests wait (polls with a long deadline, on several connections): the daemon
/// still exits, within its drain timeout and margin.
#[tokio::test]
async fn sigterm_with_requests_waiting_exits_within_the_drain_timeout() {
    let mut daemon = Daemon::start();
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut stream = bound_stream(&daemon).await;
        let watcher = watcher(&mut stream, 1, None).await;
        let mut burst = Vec::new();
        for id in 2..40 {
            burst.extend(poll_frame(id, watcher, Duration::from_secs(50)));
        }
        stream.write_all(&burst).await.expect("polls");
        streams.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .expect("stop");
    let took = started.elapsed();
    println!("SIGTERM with 4 x 38 polls waiting: exited {status:?} after {took:?}");
    assert!(status.success(), "{status:?}");
    // drain timeout (5 s) + the server's margin (2 s), with room for a slow machine.
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

/// A client that sends a burst of gets of a large value and reads nothing: the daemon stops
/// reading it (its memory stays bounded), keeps serving others, and SIGTERM still ends it within the
/// drain timeout.
#[tokio::test]
async fn a_client_that_never_reads_holds_nothing_and_does_not_hold_up_shutdown() {
    let mut daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    set_big(&client).await;
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    };
    let before = rss(daemon.pid());
    let mut stream = bound_stream(&daemon).await;
    let mut burst = Vec::new();
    for id in 0..5_000 {
        burst.extend(get_frame(id, "big"));
    }
    // The daemon stops reading once its answers fill the socket: the write cannot finish.
    let written = tokio::time::timeout(Duration::from_secs(3), stream.write_all(&burst)).await;
    println!(
        "write of {} bytes of gets finished: {}",
        burst.len(),
        written.is_ok()
    );
    let after = rss(daemon.pid());
    println!("daemon RSS: {before} kB before, {after} kB with 5000 60 KiB answers unread");
    assert!(
        after < before + 64 * 1024,
        "the daemon's memory grew by {} kB for a client that does not read",
        after - before
    );
    // Others are still served.
    assert_eq!(
        securestore_e2e::value_of(&client, "big", None)
            .await
            .map(|v| v.len()),
        Some(60 * 1024)
    );
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .expect("stop");
    let took = started.elapsed();
    println!("SIGTERM with a client not reading: exited {status:?} after {took:?}");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    drop(stream);
}

/// A client that pipelines a burst and reads its answers late (here after 1.5 s, with a 500 ms
/// frame timeout) sends nothing wrong: the daemon stopped reading it, so a frame the daemon read
/// only half of before it stopped is not the client's stall. Every answer must still come.
///
/// Today the daemon closes it "for a frame that stayed incomplete too long" after 3 answers: its
/// read-ahead ended inside a frame, and the clock of that partial frame kept running while the
/// loop waited for the peer to take its answers. Whether such a peer is closed depends only on
/// where the read-ahead happened to end (see the test below for the frame-aligned case).
#[tokio::test]
#[ignore = "by policy: a peer must keep both directions moving within the frame timeout (partial frames and, since stop 9, answers it does not take), so a peer that reads its answers later than the frame timeout is closed; kept to show the behaviour"]
async fn a_client_reading_its_answers_late_is_not_closed_for_a_stalled_frame() {
    let daemon = Daemon::start_logging(
        &["--frame-timeout-ms", "500"],
        "securestore_daemon::connection=debug",
    );
    let client = daemon.client(PROJECT).await;
    set_big(&client).await;
    let stream = bound_stream(&daemon).await;
    let (mut read, mut write) = stream.into_split();
    const GETS: u64 = 600;
    let mut burst = Vec::new();
    for id in 0..GETS {
        burst.extend(get_frame(id, "big"));
    }
    let writer = tokio::spawn(async move {
        let result = write.write_all(&burst).await;
        (write, result)
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut answered = 0;
    loop {
        let mut len = [0u8; 4];
        match tokio::time::timeout(Duration::from_secs(20), read.read_exact(&mut len)).await {
            Err(_) => panic!("stuck after {answered} answers"),
            Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        if read.read_exact(&mut body).await.is_err() {
            break;
        }
        answered += 1;
        if answered == GETS {
            break;
        }
    }
    let (_write, result) = writer.await.expect("writer");
    println!("{answered} of {GETS} answered; the burst's write: {result:?}");
    assert_eq!(
        answered,
        GETS,
        "the connection was closed with answers unsent: {}",
        daemon.log()
    );
}

/// A client that sent a few pipelined gets in one write and then stopped (a hung or stopped
/// process): its answers fill the socket and the daemon stops reading, with the rest of its
/// whole frames read ahead but not decoded. It has no partial frame and is neither quiet nor idle,
/// so only the write timeout (the frame timeout, for answers the peer does not take) closes it;
/// without it, with `--max-connections 1`, nobody else would ever be served.
#[tokio::test]
async fn a_stopped_client_with_unread_answers_does_not_hold_the_last_slot_forever() {
    let daemon = Daemon::start_with(&["--max-connections", "1", "--frame-timeout-ms", "500"]);
    let mut stopped = big_value_then_a_bound_stream(&daemon).await;
    let burst: Vec<u8> = (0..40).flat_map(|id| get_frame(id, "big")).collect();
    stopped.write_all(&burst).await.expect("burst");
    // Well past the frame timeout, then a newcomer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_a_newcomer_is_served(&daemon).await;
    drop(stopped);
}

/// A `Cancel` removes the request's cancel handle at once, while the aborted request leaves the
/// waiting set only when that set is next polled. If the next frame, reusing the id, were read
/// before that (the waiting set yielding early, e.g. with the task's coop budget spent), the new
/// request would be accepted and the old one's end would then remove the *new* one's handle: the
/// client's cancel of it would be lost, and it would keep its place and be answered later. Rounds of
/// `set, set, set, cancel P, poll P (reused id), cancel P` in one long burst; afterwards no poll P
/// may be answered by an event. (Not seen to fail: a guard for the race described.)
#[tokio::test]
async fn a_cancel_of_a_reused_id_is_never_lost() {
    let daemon = Daemon::start_with(&["--max-in-flight", "4096"]);
    let mut stream = bound_stream(&daemon).await;
    let watcher = watcher(&mut stream, 1, Some("never")).await;
    const ROUNDS: u64 = 1000;
    let poll_id = |r: u64| 1_000_000 + r;
    let long = Duration::from_secs(50);
    let first: Vec<u8> = (0..ROUNDS)
        .flat_map(|r| poll_frame(poll_id(r), watcher, long))
        .collect();
    stream.write_all(&first).await.expect("polls");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut burst = Vec::new();
    for r in 0..ROUNDS {
        burst.extend(set_frame(10 * r + 10, "a", "v", Duration::from_secs(30)));
        burst.extend(set_frame(10 * r + 11, "b", "v", Duration::from_secs(30)));
        burst.extend(set_frame(10 * r + 12, "c", "v", Duration::from_secs(30)));
        burst.extend(cancel_frame(poll_id(r)));
        burst.extend(poll_frame(poll_id(r), watcher, long));
        burst.extend(cancel_frame(poll_id(r)));
    }
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(&burst).await.expect("burst");
        write
    });
    let mut refused = 0;
    let mut sets = 0;
    while sets < 3 * ROUNDS {
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(20), read.read_exact(&mut len))
            .await
            .expect("answers within 20 s")
            .expect("answer");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        read.read_exact(&mut body).await.expect("body");
        let answer: Response<SecureStoreResponse> =
            securestore_proto::codec::decode(&body, LIMIT).expect("decode");
        if answer.request_id >= 1_000_000 {
            // A reused id refused as still under way: the old request had not left yet.
            assert!(is_refusal(&answer, "already under way"), "{answer:?}");
            refused += 1;
        } else {
            sets += 1;
        }
    }
    let _write = writer.await.expect("writer");
    // An event for the watched key: any poll still waiting is answered now.
    daemon
        .client(PROJECT)
        .await
        .set_item("never", "v", securestore_client::SetOptions::default())
        .await
        .expect("set");
    let mut answered_after_cancel = Vec::new();
    while let Ok(Some(len)) = tokio::time::timeout(Duration::from_secs(1), async {
        let mut len = [0u8; 4];
        read.read_exact(&mut len).await.ok().map(|_| len)
    })
    .await
    {
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        read.read_exact(&mut body).await.expect("body");
        let answer: Response<SecureStoreResponse> =
            securestore_proto::codec::decode(&body, LIMIT).expect("decode");
        answered_after_cancel.push(answer.request_id);
    }
    println!(
        "{ROUNDS} rounds: {refused} reused ids refused as under way, {} cancelled polls answered",
        answered_after_cancel.len()
    );
    assert!(
        answered_after_cancel.is_empty(),
        "cancelled requests were answered (their cancel was lost): {answered_after_cancel:?}"
    );
}

/// Two connections flood pipelined gets (answered inline, in their connection's own task) while a
/// third client makes single gets: prints the third one's latencies, with and without the flood.
/// The daemon runs one thread, and a connection's loop answers every get it can read before it
/// yields, so this shows how long a flood can hold the others up. Asserts only that all are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_inline_gets_and_the_latency_of_another_client() {
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    client
        .set_item("k", "v", securestore_client::SetOptions::default())
        .await
        .expect("set");
    async fn probe(client: &securestore_client::Client) -> (Duration, Duration) {
        let mut times = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            assert_eq!(
                securestore_e2e::value_of(client, "k", None)
                    .await
                    .as_deref(),
                Some("v")
            );
            times.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.sort_unstable();
        (times[times.len() / 2], times[times.len() - 1])
    }
    let quiet = probe(&client).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flooders = Vec::new();
    for _ in 0..2 {
        let stream = bound_stream(&daemon).await;
        let (mut read, mut write) = stream.into_split();
        let stop = stop.clone();
        let burst: Vec<u8> = (0..2000).flat_map(|id| get_frame(id, "k")).collect();
        flooders.push(tokio::spawn(async move {
            let writer = async {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if write.write_all(&burst).await.is_err() {
                        break;
                    }
                }
            };
            let reader = async {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
                total
            };
            let ((), total) = tokio::join!(writer, reader);
            total
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Bounded, so a daemon that stops serving the other connection fails here instead of hanging.
    let flooded = tokio::time::timeout(Duration::from_secs(60), probe(&client))
        .await
        .expect("the other client is served during the flood");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered_bytes = 0;
    for flooder in flooders {
        answered_bytes += tokio::time::timeout(Duration::from_secs(10), flooder)
            .await
            .map(|r| r.expect("flooder"))
            .unwrap_or(0);
    }
    println!(
        "probe get latency, median / max: quiet {:?} / {:?}; with 2 connections flooding gets \
         ({answered_bytes} bytes of answers) {:?} / {:?}",
        quiet.0, quiet.1, flooded.0, flooded.1
    );
}

/// One connection pipelines 20 000 gets (answered inline) while reading its answers: prints the
/// time they take. Asserts only that every one is answered, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_burst_of_gets_is_answered_in_full() {
    let daemon = Daemon::start();
    daemon
        .client(PROJECT)
        .await
        .set_item("k", "v", securestore_client::SetOptions::default())
        .await
        .expect("set");
    const GETS: u64 = 20_000;
    let stream = bound_stream(&daemon).await;
    let (mut read, mut write) = stream.into_split();
    let burst: Vec<u8> = (0..GETS).flat_map(|id| get_frame(id, "k")).collect();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        write.write_all(&burst).await.expect("burst");
        write
    });
    let mut seen = vec![false; GETS as usize];
    for _ in 0..GETS {
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(30), read.read_exact(&mut len))
            .await
            .expect("an answer within 30 s")
            .expect("answer");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        read.read_exact(&mut body).await.expect("body");
        let answer: Response<SecureStoreResponse> =
            securestore_proto::codec::decode(&body, LIMIT).expect("decode");
        assert_eq!(got_value(&answer).as_deref(), Some("v"), "{answer:?}");
        assert!(!std::mem::replace(
            &mut seen[answer.request_id as usize],
            true
        ));
    }
    let took = started.elapsed();
    let _write = writer.await.expect("writer");
    println!(
        "{GETS} pipelined gets on one connection answered in {took:?} ({:.0} per second)",
        GETS as f64 / took.as_secs_f64()
    );
}

/// With one connection slot and another process taking it again and again, a raw client trickles
/// pipelined sets (each to its own key) and reads until its connection ends. When the daemon said
/// goodbye, exactly the sets it answered were applied: none unanswered ran (a client would send
/// those again, and they would run twice). Without a goodbye, every answered set was applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_goodbye_exactly_the_answered_sets_were_applied() {
    let daemon = Daemon::start_with(&["--max-connections", "1"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (stop, mut cli) = (stop.clone(), daemon.cli());
        cli.args(["--project", "@tests/other", "get", "nothing"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = cli.status();
            }
        })
    };
    const SETS: u64 = 200;
    // Per connection: the ids sent, those answered "set", whether it said goodbye.
    let mut connections = Vec::new();
    for c in 0..10u64 {
        let stream = bound_stream(&daemon).await;
        let (mut read, mut write) = stream.into_split();
        let writer = tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..SETS {
                let id = c * 10_000 + i;
                let bytes = set_frame(id, &format!("k{id}"), "v", Duration::from_secs(30));
                if write.write_all(&bytes).await.is_err() {
                    break;
                }
                sent.push(id);
                if i % 5 == 4 {
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            }
            (write, sent)
        });
        let mut answered = Vec::new();
        let mut goodbye = false;
        while let Ok(Some(answer)) =
            tokio::time::timeout(Duration::from_secs(5), next_response(&mut read)).await
        {
            if answer.request_id == securestore_proto::goodbye::GOODBYE_REQUEST_ID {
                goodbye = true;
                continue;
            }
            if matches!(answer.message, Ok(SecureStoreResponse::SetItem(Ok(())))) {
                answered.push(answer.request_id);
            }
        }
        let (_write, sent) = writer.await.expect("writer");
        connections.push((sent, answered, goodbye));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().expect("churn");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = daemon.client(PROJECT).await;
    let mut wrong = Vec::new();
    let mut goodbyes = 0;
    for (sent, answered, goodbye) in &connections {
        goodbyes += usize::from(*goodbye);
        for id in sent {
            let applied = securestore_e2e::value_of(&client, &format!("k{id}"), None)
                .await
                .is_some();
            let was_answered = answered.contains(id);
            if (was_answered && !applied) || (*goodbye && applied && !was_answered) {
                wrong.push(format!(
                    "set {id}: answered {was_answered}, applied {applied}, goodbye {goodbye}"
                ));
            }
        }
    }
    let summary: Vec<_> = connections
        .iter()
        .map(|(sent, answered, goodbye)| (sent.len(), answered.len(), *goodbye))
        .collect();
    println!("(sent, answered, goodbye) per connection: {summary:?}");
    assert!(wrong.is_empty(), "{wrong:?}");
    assert!(
        goodbyes > 0,
        "no connection was closed with a goodbye: nothing was checked"
    );
}

/// A client that sent its gets two at a time and stopped reading: the answer to its last get cannot
/// be written (the earlier ones fill the socket), but that get has run and nothing of the client's
/// is half-read or waiting. It is idle, so with `--max-connections 1` it is asked to make
/// room and closed (without a goodbye: an answer is unsent), and a newcomer is served. A request
/// answered at once must not count as under way while its answer waits for the peer.
#[tokio::test]
async fn a_client_stuck_on_an_unread_answer_makes_room_for_a_newcomer() {
    let daemon = Daemon::start_with(&["--max-connections", "1"]);
    let mut stopped = big_value_then_a_bound_stream(&daemon).await;
    // Two at a time, a large answer then a small one: once the socket is nearly full, the second
    // get has run and its answer waits behind the first one's, which cannot be written.
    for id in 0..8 {
        let mut pair = get_frame(2 * id, "big");
        pair.extend(get_frame(2 * id + 1, "absent"));
        stopped.write_all(&pair).await.expect("two gets");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_a_newcomer_is_served(&daemon).await;
    drop(stopped);
}
