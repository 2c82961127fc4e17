//! One connection's life: check the peer, run the handshake, bind the project, serve requests.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use securestore_backends::ProjectScope;
use securestore_proto::handshake::{self, Accepted, Hello, HelloReply, PROTOCOL_VERSION};
use securestore_proto::tarpc::server::{self as rpc, Channel};
use securestore_proto::{ProjectId, SecureStore, ServiceError};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::handler::Handler;
use crate::store::StoreHandle;

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

async fn serve_peer(stream: UnixStream, peer_uid: u32, shared: Arc<Shared>) {
    let mut frames = handshake::frames(stream);
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

    let scope = match admit(&hello, peer_uid, shared.uid) {
        Ok(scope) => scope,
        Err(refusal) => {
            tracing::warn!(project = %hello.project.escape_debug(), %refusal, "connection refused");
            let _ = handshake::send(&mut frames, &HelloReply::Rejected(refusal)).await;
            return;
        }
    };
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
        store: shared.store.clone(),
        max_value_bytes: shared.config.max_value_bytes,
        shutdown: shared.shutdown.clone(),
    };
    let transport = handshake::server_transport(frames, shared.config.max_value_bytes);
    let requests = rpc::BaseChannel::with_defaults(transport)
        .max_concurrent_requests(shared.config.max_in_flight_per_connection)
        .execute(handler.serve());

    let in_flight = TaskTracker::new();
    let serve = requests.for_each(|request| {
        in_flight.spawn(request);
        async {}
    });
    tokio::pin!(serve);
    tokio::select! {
        () = &mut serve => tracing::debug!("peer closed the connection"),
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

/// Decides whether this peer may act for the project it names; the returned scope is the binding.
fn admit(hello: &Hello, peer_uid: u32, daemon_uid: u32) -> Result<ProjectScope, ServiceError> {
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
    let project = ProjectId::parse(&hello.project)?;
    Ok(ProjectScope::bind(project))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(project: &str) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            project: project.to_owned(),
        }
    }

    #[test]
    fn binds_the_project_named_in_the_handshake() {
        let scope = admit(&hello("@owner/app"), 1000, 1000).expect("admitted");
        assert_eq!(scope.project().as_str(), "@owner/app");
        assert!(
            admit(&hello("@owner/app"), 0, 1000).is_ok(),
            "root is admitted"
        );
    }

    #[test]
    fn refuses_other_uids_before_looking_at_the_project() {
        let refusal = admit(&hello("not a valid id"), 1001, 1000).expect_err("refused");
        assert!(
            matches!(refusal, ServiceError::Refused { .. }),
            "{refusal:?}"
        );
        assert!(refusal.to_string().contains("1001"));
    }

    #[test]
    fn refuses_other_versions_and_bad_ids() {
        let mut old = hello("p");
        old.protocol_version = PROTOCOL_VERSION.wrapping_add(1);
        assert!(matches!(
            admit(&old, 1, 1),
            Err(ServiceError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            admit(&hello(""), 1, 1),
            Err(ServiceError::InvalidProject { .. })
        ));
    }
}
