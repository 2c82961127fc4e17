//! One connection's life: check the peer, run the handshake, then either answer one registry request
//! or bind the project and serve requests.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use securestore_backends::ProjectScope;
use securestore_proto::handshake::{
    self, Accepted, AdminAnswer, AdminRequest, Frames, Hello, HelloReply, PROTOCOL_VERSION, Purpose,
};
use securestore_proto::tarpc::server::{self as rpc, Channel};
use securestore_proto::{ProjectId, SecretString, SecureStore, ServiceError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::handler::Handler;
use crate::registry::TokenHash;
use crate::store::StoreHandle;
use crate::watch::FrameWatch;

/// After shutdown, how long a connection keeps flushing answers of requests that just finished.
const FLUSH_AFTER_DRAIN: Duration = Duration::from_millis(100);

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) store: StoreHandle,
    pub(crate) shutdown: CancellationToken,
    /// The daemon's own uid: peers must run as it, or as root.
    pub(crate) uid: u32,
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
    tracing::Instrument::instrument(serve_peer(stream, peer.uid(), shared), span).await;
}

/// Serves one peer whose uid is already known: a socket peer (uid from the kernel) or an in-process
/// peer of [`crate::Host`] (the daemon's own uid: it is this process). Everything after the uid —
/// handshake, binding, tokens, limits — is the same for both.
pub(crate) async fn serve_peer<S>(stream: S, peer_uid: u32, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watched = FrameWatch::new(stream);
    let stall = watched.stall();
    let mut frames = handshake::frames(watched);
    let hello = tokio::time::timeout(
        shared.config.handshake_timeout,
        handshake::recv::<_, Hello>(&mut frames),
    )
    .await;
    let hello = match hello {
        Ok(Ok(hello)) => hello,
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

    let (project, token) = match hello.purpose {
        Purpose::Admin(request) => {
            answer_admin(&mut frames, request, &shared).await;
            return;
        }
        Purpose::Project { project, token } => (project, token),
    };
    let (scope, token_hash) = match bind(&project, token.as_ref(), &shared.config) {
        Ok(bound) => bound,
        Err(refusal) => {
            tracing::warn!(project = %project.escape_debug(), "project refused");
            refuse(&mut frames, refusal).await;
            return;
        }
    };
    drop(token);
    let accepted = Accepted {
        protocol_version: PROTOCOL_VERSION,
        max_value_bytes: shared.config.max_value_bytes,
    };
    if let Err(err) = handshake::send(&mut frames, &HelloReply::Accepted(accepted)).await {
        tracing::debug!(%err, "peer left during the handshake");
        return;
    }
    tracing::debug!(project = %scope.project(), "connection bound");

    let handler = Handler {
        scope: Arc::new(scope),
        token_hash,
        registry: shared.config.registry.clone(),
        store: shared.store.clone(),
        max_value_bytes: shared.config.max_value_bytes,
        shutdown: shared.shutdown.clone(),
    };
    let transport = handshake::server_transport(frames, shared.config.max_value_bytes);
    let requests = rpc::BaseChannel::with_defaults(transport)
        .max_concurrent_requests(shared.config.max_in_flight_per_connection)
        .execute(handler.serve());

    // Cancelled when a request of this connection panics: only this connection is closed.
    let broken = CancellationToken::new();
    let in_flight = TaskTracker::new();
    let serve = requests.for_each(|request| {
        let broken = broken.clone();
        in_flight.spawn(async move {
            if AssertUnwindSafe(request).catch_unwind().await.is_err() {
                tracing::error!("a request handler panicked; closing this connection");
                broken.cancel();
            }
        });
        async {}
    });
    tokio::pin!(serve);
    tokio::select! {
        () = &mut serve => tracing::debug!("peer closed the connection"),
        () = stall.stalled(shared.config.frame_timeout) => {
            tracing::debug!("a frame stayed incomplete too long; closing");
        }
        () = broken.cancelled() => {}
        () = shared.shutdown.cancelled() => {
            // Let requests under way finish and their answers go out; new ones are turned away by
            // the handler. Bounded, so a stuck request cannot hold up shutdown.
            in_flight.close();
            let drain = async {
                tokio::select! {
                    () = &mut serve => {}
                    () = in_flight.wait() => {
                        let _ = tokio::time::timeout(FLUSH_AFTER_DRAIN, &mut serve).await;
                    }
                }
            };
            let _ = tokio::time::timeout(shared.config.drain_timeout, drain).await;
        }
    }
}

/// Answers a refusal and lets the connection close.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
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
    if hello.protocol_version != PROTOCOL_VERSION {
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
    Ok((ProjectScope::bind(project), token_hash))
}

/// Runs one registry request and sends its answer; the connection closes afterwards.
async fn answer_admin<S: AsyncRead + AsyncWrite + Unpin>(
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

/// Unregisters the project first (so its token stops working at once), then deletes its items.
/// The project is bound exactly as a connection would be, so a registered project's token is required
/// and this is still the only way to a [`ProjectScope`]. The items are deleted even if it was not
/// registered, so a failed earlier removal can be retried.
async fn remove_project(
    project: &str,
    token: Option<&SecretString>,
    config: &Config,
    store: &StoreHandle,
) -> Result<AdminAnswer, ServiceError> {
    let (scope, _) = bind(project, token, config)?;
    let registry = config.registry.clone();
    let id = scope.project().as_str().to_owned();
    let existed = blocking(move || registry.remove(&id)).await?;
    store
        .delete_project(scope)
        .await
        .map_err(crate::error::to_wire)?;
    Ok(AdminAnswer::Removed { existed })
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
        old.protocol_version = PROTOCOL_VERSION.wrapping_add(1);
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
