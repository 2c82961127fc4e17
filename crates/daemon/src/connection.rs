//! One connection's life: check the peer, run the handshake, then either answer one registry request
//! or bind the project and serve requests.

use std::sync::Arc;
use std::time::Duration;

use securestore_backends::ProjectScope;
use securestore_proto::handshake::{
    self, Accepted, AdminAnswer, AdminRequest, Frames, Hello, HelloReply, PROTOCOL_VERSION, Purpose,
};
use securestore_proto::{ProjectId, SecretString, ServiceError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::budget::Budget;
use crate::handler::Bound;
use crate::registry::TokenHash;
use crate::requests::{self, Ended};
use crate::slots::{Slot, Slots};
use crate::store::{StoreHandle, Unsettled};
use crate::watch::{FrameWatch, Socket};

/// After shutdown, how long a connection keeps flushing answers of requests that just finished.
const FLUSH_AFTER_DRAIN: Duration = Duration::from_millis(100);

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) store: StoreHandle,
    pub(crate) shutdown: CancellationToken,
    /// The daemon's own uid: peers must run as it, or as root.
    pub(crate) uid: u32,
    /// Bytes of requests in flight, across all connections.
    pub(crate) budget: Budget,
    /// Bound connections, for making room when every slot is taken.
    pub(crate) slots: Arc<Slots>,
}

/// Serves `stream` until the peer leaves or the daemon shuts down.
pub(crate) async fn serve(stream: UnixStream, shared: Arc<Shared>) {
    // The kernel's word on who is calling; nothing the peer sends can change it.
    let peer = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(err) => {
            tracing::warn!(%err, "cannot read peer credentials; closing");
            return;
        }
    };
    let span = tracing::info_span!(
        "conn",
        peer_uid = peer.uid(),
        peer_pid = peer.pid().unwrap_or(0)
    );
    tracing::Instrument::instrument(serve_peer(stream, peer.uid(), Origin::Socket, shared), span)
        .await;
}

/// Where a peer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The socket: it may be closed while idle to make room for a newcomer (it reconnects).
    Socket,
    /// This process, through [`crate::Host`]: never closed to make room, as its client cannot
    /// open a new pipe by itself; it counts against the cap all the same.
    InProcess,
}

/// Serves one peer whose uid is already known: a socket peer (uid from the kernel) or an in-process
/// peer of [`crate::Host`] (the daemon's own uid: it is this process). Everything after the uid —
/// handshake, binding, tokens, limits — is the same for both.
pub(crate) async fn serve_peer<S>(stream: S, peer_uid: u32, origin: Origin, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Socket + Unpin + Send + 'static,
{
    // The handshake is not paid for: its frames are small (4 KiB) and one per connection, and a
    // newcomer must not wait behind the requests in flight only to say hello.
    let watched = FrameWatch::new(stream, None);
    let stall = watched.stall();
    let mut frames = handshake::frames(watched);
    let hello = tokio::time::timeout(
        shared.config.handshake_timeout,
        handshake::recv_hello(&mut frames),
    )
    .await;
    let hello: Hello = match hello {
        Ok(Ok(Ok(hello))) => hello,
        Ok(Ok(Err(refusal))) => {
            // Well formed but for a name or token that is not UTF-8: answered like any bad name.
            refuse(&mut frames, refusal).await;
            return;
        }
        Ok(Err(err)) => {
            tracing::debug!(%err, "handshake failed; closing");
            return;
        }
        Err(_) => {
            tracing::debug!("no handshake in time; closing");
            return;
        }
    };
    if let Err(refusal) = check_peer(&hello, peer_uid, shared.uid) {
        refuse(&mut frames, refusal).await;
        return;
    }

    let hello_version = hello.protocol_version;
    let (project, token) = match hello.purpose {
        Purpose::Admin(request) => {
            answer_admin(&mut frames, request, &shared).await;
            return;
        }
        Purpose::Project { project, token } => (project, token),
    };
    let bound = bind(&project, token.as_ref(), &shared.config);
    let (scope, token_hash) = match bound {
        Ok(bound) => bound,
        Err(refusal) => {
            tracing::warn!(project = %project.escape_debug(), "project refused");
            refuse(&mut frames, refusal).await;
            return;
        }
    };
    drop(token);
    // An older client is served in its own version; a newer one in ours (it then sends only our
    // calls). check_peer has refused any version too old to negotiate.
    let accepted = Accepted {
        protocol_version: hello_version.min(PROTOCOL_VERSION),
        max_value_bytes: shared.config.max_value_bytes,
    };
    if let Err(err) = handshake::send(&mut frames, &HelloReply::Accepted(accepted)).await {
        tracing::debug!(%err, "peer left during the handshake");
        return;
    }
    tracing::debug!(project = %scope.project(), "connection bound");

    let bound = Arc::new(Bound {
        scope: Arc::new(scope),
        token_hash,
        registry: shared.config.registry.clone(),
        store: shared.store.clone(),
        max_value_bytes: shared.config.max_value_bytes,
        shutdown: shared.shutdown.clone(),
        unsettled: Unsettled::default(),
        watchers: Default::default(),
    });
    // From the first request on, every frame is paid for. The hello was the only frame handed on so
    // far (one per read), so no request frame has slipped through unpaid.
    let budget = shared.budget.connection();
    frames.get_mut().pay_from(budget.clone());
    // Owned here and dropped last: dropping it is what sends the goodbye, once one is decided on.
    let mut transport = handshake::server_transport(frames, shared.config.max_value_bytes);
    let in_flight = TaskTracker::new();
    let slot =
        (origin == Origin::Socket).then(|| shared.slots.enter(stall.clone(), in_flight.clone()));
    let serve = requests::serve(
        &mut transport,
        bound,
        budget,
        in_flight.clone(),
        requests::Limits {
            max_in_flight: shared.config.max_in_flight_per_connection,
            write_timeout: shared.config.frame_timeout,
        },
    );
    tokio::pin!(serve);
    tokio::select! {
        ended = &mut serve => match ended {
            Ended::Closed => tracing::debug!("peer closed the connection"),
            Ended::Failed(err) => tracing::debug!(%err, "the connection failed; closing"),
            Ended::Panicked => {
                tracing::error!("a request handler panicked; closing this connection");
            }
        },
        () = stall.stalled(shared.config.frame_timeout) => {
            tracing::debug!("a frame stayed incomplete too long; closing");
        }
        () = idle_when_asked(slot.as_ref(), &stall, &in_flight) => {
            // Reads have stopped: let tarpc write the last answers and end; only then may the
            // goodbye go out (as the socket is dropped), since it tells the peer nothing unanswered
            // ran. A peer that does not take its answers gets no goodbye.
            if tokio::time::timeout(FLUSH_AFTER_DRAIN, &mut serve).await.is_ok() {
                stall.say_goodbye();
            }
            tracing::debug!("closed while idle to make room for a new connection");
        }
        () = shared.shutdown.cancelled() => {
            // Let requests under way finish and their answers go out; new ones are turned away by
            // the handler. Bounded, so a stuck request cannot hold up shutdown.
            in_flight.close();
            let drain = async {
                tokio::select! {
                    _ = &mut serve => {}
                    () = in_flight.wait() => {
                        let _ = tokio::time::timeout(FLUSH_AFTER_DRAIN, &mut serve).await;
                    }
                }
            };
            let _ = tokio::time::timeout(shared.config.drain_timeout, drain).await;
        }
    }
}

/// Completes once the accept loop has asked this connection to make room and it is idle: nothing
/// half-read or waiting to be decoded, no request under way. It then stops reading, so a request the
/// peer sends from now on is never run; the goodbye tells the peer so.
async fn idle_when_asked(
    slot: Option<&Slot>,
    stall: &crate::watch::Stall,
    in_flight: &TaskTracker,
) {
    let Some(slot) = slot else {
        // Not in the table: never asked.
        return std::future::pending().await;
    };
    loop {
        slot.asked().await;
        // Checked in the same turn that stops the reads: the connection's task cannot read between.
        if stall.is_quiet() && in_flight.is_empty() {
            stall.stop_reading();
            return;
        }
        tracing::trace!("asked to make room, but busy");
    }
}

/// Answers a refusal and lets the connection close.
async fn refuse<S: AsyncRead + AsyncWrite + Socket + Unpin>(
    frames: &mut Frames<FrameWatch<S>>,
    refusal: ServiceError,
) {
    tracing::warn!(%refusal, "connection refused");
    let _ = handshake::send(frames, &HelloReply::Rejected(refusal)).await;
}

/// Checks who is calling and in which protocol, before anything the peer asks for is looked at.
fn check_peer(hello: &Hello, peer_uid: u32, daemon_uid: u32) -> Result<(), ServiceError> {
    if peer_uid != daemon_uid && peer_uid != 0 {
        return Err(ServiceError::Refused {
            reason: format!(
                "peer uid {peer_uid} is neither the daemon's uid ({daemon_uid}) nor root"
            ),
        });
    }
    if handshake::negotiate(hello.protocol_version).is_none() {
        return Err(ServiceError::UnsupportedVersion {
            client: hello.protocol_version,
            daemon: PROTOCOL_VERSION,
        });
    }
    Ok(())
}

/// Decides whether the peer may act for `project`; the returned scope is the connection's binding.
/// This is the only place a [`ProjectScope`] is made.
pub(crate) fn bind(
    project: &str,
    token: Option<&SecretString>,
    config: &Config,
) -> Result<(ProjectScope, Option<TokenHash>), ServiceError> {
    let project = ProjectId::parse(project)?;
    let token_hash = config.registry.admit(&project, token, config.policy)?;
    // A token for a project that has none is a mistake worth saying: the peer believes its
    // project is protected when it is open to every peer of this uid.
    if token.is_some() && token_hash.is_none() {
        return Err(ServiceError::Refused {
            reason: format!(
                "project '{project}' is not registered, so it has no access token; register it \
                 (securestore project add) or connect without a token"
            ),
        });
    }
    Ok((ProjectScope::bind(project), token_hash))
}

/// Runs one registry request and sends its answer; the connection closes afterwards.
async fn answer_admin<S: AsyncRead + AsyncWrite + Socket + Unpin>(
    frames: &mut Frames<FrameWatch<S>>,
    request: AdminRequest,
    shared: &Shared,
) {
    tracing::info!(request = ?request, "registry request");
    let registry = shared.config.registry.clone();
    let answer = match request {
        AdminRequest::AddProject { project } => blocking(move || registry.add(&project))
            .await
            .map(|token| AdminAnswer::Added { token }),
        AdminRequest::RemoveProject { project, token } => {
            remove_project(&project, token.as_ref(), &shared.config, &shared.store).await
        }
        AdminRequest::ListProjects => Ok(AdminAnswer::Projects(registry.list())),
        AdminRequest::ReplaceProject { project, wipe } => {
            replace_project(&project, wipe, &shared.config, &shared.store)
                .await
                .map(|token| AdminAnswer::Added { token })
        }
        AdminRequest::Device(signal) => shared
            .store
            .device(Some(signal))
            .await
            .map(AdminAnswer::Device)
            .map_err(crate::error::to_wire),
        AdminRequest::DeviceStatus => shared
            .store
            .device(None)
            .await
            .map(AdminAnswer::Device)
            .map_err(crate::error::to_wire),
        AdminRequest::RotateKey => shared
            .store
            .rotate_key()
            .await
            .map(|()| AdminAnswer::Rotated)
            .map_err(crate::error::to_wire),
    };
    let reply = match answer {
        Ok(answer) => HelloReply::Admin(answer),
        Err(err) => {
            tracing::warn!(%err, "registry request failed");
            HelloReply::Rejected(err)
        }
    };
    handshake::allow_admin_answer(frames);
    // A project list can outgrow the socket buffer: a peer that never reads must not hold us.
    match tokio::time::timeout(
        shared.config.handshake_timeout,
        handshake::send(frames, &reply),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!(%err, "peer left before the registry answer"),
        Err(_) => tracing::debug!("peer did not read the registry answer in time"),
    }
}

/// Removes a project as one durable step, as seen from outside: the removal is recorded in the
/// registry first (token revoked, the project closed to every connection in every policy), then its
/// items are deleted, then the record goes. A crash in between leaves the record, and the removal is
/// finished at the next start or by this request again, never exposed.
///
/// A registered project's token is required. Needing none: a project whose removal is already
/// pending (its token was checked when it began and is revoked now), and an unregistered one, in
/// every policy, so items left by an older daemon can be deleted even in strict mode.
async fn remove_project(
    project: &str,
    token: Option<&SecretString>,
    config: &Config,
    store: &StoreHandle,
) -> Result<AdminAnswer, ServiceError> {
    let scope = bind_for_removal(project, token, config)?;
    let registry = config.registry.clone();
    let id = scope.project().clone();
    let existed = blocking(move || registry.begin_removal(&id)).await?;
    store
        .delete_project(scope.clone())
        .await
        .map_err(crate::error::to_wire)?;
    let registry = config.registry.clone();
    blocking(move || registry.finish_removal(scope.project(), false)).await?;
    Ok(AdminAnswer::Removed { existed })
}

/// The registry check of [`remove_project`]; the returned scope is used only to delete the items.
/// The one other place a [`ProjectScope`] is made besides [`bind`] (and start-up's completion of
/// interrupted removals): deleting needs no read access, and a removal must stay possible when the
/// project can no longer be opened.
fn bind_for_removal(
    project: &str,
    token: Option<&SecretString>,
    config: &Config,
) -> Result<ProjectScope, ServiceError> {
    let project = ProjectId::parse(project)?;
    let registry = &config.registry;
    if !registry.is_removing(&project) {
        // The open policy's rule, whatever `config.policy` says: a registered project needs its
        // token, an unregistered one's leftovers may be removed by the daemon's uid.
        registry.admit(&project, token, crate::Policy::Open)?;
    }
    Ok(ProjectScope::bind(project))
}

/// Issues `project` a new token, revoking the old one: for a lost `add` answer. With `wipe`, its
/// items are removed first, exactly as [`remove_project`] does, and the new registration is saved in
/// the same step that ends the removal.
async fn replace_project(
    project: &str,
    wipe: bool,
    config: &Config,
    store: &StoreHandle,
) -> Result<SecretString, ServiceError> {
    let id = ProjectId::parse(project)?;
    let registry = config.registry.clone();
    if !wipe {
        let (token, replaced) = blocking(move || registry.replace(&id)).await?;
        tracing::info!(project, ?replaced, "token replaced; items kept");
        return Ok(token);
    }
    let scope = ProjectScope::bind(id.clone());
    if registry.is_removing(&id) {
        return Err(ServiceError::Refused {
            reason: format!(
                "project '{id}' is being removed; run `securestore project remove {id}` first"
            ),
        });
    }
    blocking(move || registry.begin_removal(&id)).await?;
    store
        .delete_project(scope.clone())
        .await
        .map_err(crate::error::to_wire)?;
    let registry = config.registry.clone();
    let token = blocking(move || registry.finish_removal(scope.project(), true)).await?;
    token.ok_or_else(|| ServiceError::Storage {
        message: "no token was issued".to_owned(),
    })
}

/// Runs blocking registry work (it writes a file) off the async executor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|_| {
        Err(ServiceError::Storage {
            message: "the registry update failed unexpectedly".to_owned(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    fn config(policy: Policy) -> Config {
        Config {
            policy,
            ..Config::default()
        }
    }

    #[test]
    fn binds_the_project_named_in_the_handshake() {
        let (scope, token) = bind("@owner/app", None, &config(Policy::Open)).expect("bound");
        assert_eq!(scope.project().as_str(), "@owner/app");
        assert!(token.is_none());
        assert!(
            check_peer(&Hello::project("p", None), 0, 1000).is_ok(),
            "root is admitted"
        );
        assert!(check_peer(&Hello::project("p", None), 1000, 1000).is_ok());
    }

    #[test]
    fn refuses_other_uids_whatever_they_ask() {
        for hello in [
            Hello::project("@o/p", None),
            Hello::admin(AdminRequest::ListProjects),
        ] {
            let refusal = check_peer(&hello, 1001, 1000).expect_err("refused");
            assert!(
                matches!(refusal, ServiceError::Refused { .. }),
                "{refusal:?}"
            );
            assert!(refusal.to_string().contains("1001"));
        }
    }

    #[test]
    fn refuses_other_versions_bad_ids_and_unregistered_projects_in_strict_mode() {
        let mut old = Hello::project("p", None);
        old.protocol_version = 0;
        assert!(matches!(
            check_peer(&old, 1, 1),
            Err(ServiceError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            bind("", None, &config(Policy::Open)),
            Err(ServiceError::InvalidProject { .. })
        ));
        assert!(matches!(
            bind("@o/p", None, &config(Policy::Strict)),
            Err(ServiceError::Refused { .. })
        ));

        let strict = config(Policy::Strict);
        let token = strict.registry.add("@o/p").expect("add");
        let (_, hash) = bind("@o/p", Some(&token), &strict).expect("registered with token");
        assert!(hash.is_some());
    }
}
