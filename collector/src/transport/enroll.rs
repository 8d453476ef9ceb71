//! Enrollment and renewal over the agent listener.
//!
//! `POST /v1/enroll` needs no client certificate: it is authorised by a one-time join token
//! (the agent trusts the server because the token pins the CA's fingerprint). The CSR is
//! checked before the token is used up, so a malformed request does not burn a token.
//! `POST /v1/enroll/service-account` is the same for agents in a Kubernetes cluster,
//! authorised by their ServiceAccount token instead ([`super::token_review`]).
//! `POST /v1/renew` needs the agent's current, verified and unrevoked certificate, and
//! issues one for the same host.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dockermon_proto::transport::{
    CertificateIssued, EnrollRequest, ErrorBody, JoinToken, RenewRequest,
    ServiceAccountEnrollRequest,
};
use dockermon_proto::{HostName, now_ns};
use tracing::{info, warn};

use super::AgentService;
use super::tls::Peer;
use super::token_review::ReviewRefusal;
use crate::store::{Admission, TokenRefusal};

/// An error answer: status, machine-readable code, message.
pub(super) struct Refusal(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let Refusal(status, code, message) = self;
        (
            status,
            Json(ErrorBody {
                code: code.to_owned(),
                message,
            }),
        )
            .into_response()
    }
}

fn unavailable(error: impl std::fmt::Display) -> Refusal {
    warn!(%error, "enrollment failed");
    Refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the collector cannot issue certificates right now".into(),
    )
}

pub(super) async fn enroll(
    State(service): State<Arc<AgentService>>,
    Json(request): Json<EnrollRequest>,
) -> Result<Json<CertificateIssued>, Refusal> {
    let Some(authority) = service.authority.as_ref() else {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            "enrollment_off",
            "this collector does not issue certificates (its agents bring their own)".into(),
        ));
    };
    let token: JoinToken =
        request
            .token
            .parse()
            .map_err(|e: dockermon_proto::transport::MalformedToken| {
                Refusal(StatusCode::BAD_REQUEST, "token_malformed", e.to_string())
            })?;
    if token.ca_fingerprint != authority.fingerprint() {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "token_other_ca",
            "this join token was made by another collector's CA".into(),
        ));
    }
    // Checked before the token is used up.
    check_csr(&request.csr_pem)?;
    let host = match service
        .store
        .consume_join_token(&token.secret, now_ns())
        .await
        .map_err(unavailable)?
    {
        Ok(host) => host,
        Err(refusal) => {
            let code = match refusal {
                TokenRefusal::Unknown => "token_unknown",
                TokenRefusal::Expired => "token_expired",
                TokenRefusal::Used => "token_used",
                TokenRefusal::Revoked => "token_revoked",
            };
            warn!(reason = %refusal, "join token refused");
            return Err(Refusal(StatusCode::FORBIDDEN, code, refusal.to_string()));
        }
    };
    let (issued, serial) = match issue(&service, &request.csr_pem, &host, false).await {
        Ok(issued) => issued,
        Err(refusal) => {
            // Nothing was issued: the token is not spent.
            if let Err(error) = service.store.release_join_token(&token.secret).await {
                warn!(%error, "cannot give a join token back after a failed enrollment");
            }
            return Err(refusal);
        }
    };
    replace_others(&service, &host, &serial).await?;
    Ok(Json(issued))
}

/// Refuses a malformed CSR before anything is spent on the request.
fn check_csr(csr_pem: &str) -> Result<(), Refusal> {
    rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map(|_| ())
        .map_err(|e| {
            Refusal(
                StatusCode::BAD_REQUEST,
                "csr_invalid",
                format!("the certificate signing request is invalid: {e}"),
            )
        })
}

/// One agent per host name: whoever held it before is refused from now on.
async fn replace_others(
    service: &AgentService,
    host: &HostName,
    serial: &str,
) -> Result<(), Refusal> {
    let replaced = service
        .store
        .revoke_other_certificates(host, serial, now_ns())
        .await
        .map_err(unavailable)?;
    if replaced > 0 {
        info!(%host, replaced, "agent enrolled; the agent that held this name before is refused from now on");
    } else {
        info!(%host, "agent enrolled");
    }
    Ok(())
}

/// Enrollment by ServiceAccount token. The API server decides who the token belongs to; a
/// host deleted by a person stays refused (re-admitting it takes `token create`, as for any
/// deleted host), and a node's new agent replaces the one before it, since Kubernetes
/// vouches that it runs on that node.
pub(super) async fn enroll_service_account(
    State(service): State<Arc<AgentService>>,
    Json(request): Json<ServiceAccountEnrollRequest>,
) -> Result<Json<CertificateIssued>, Refusal> {
    let (Some(_), Some(reviewer)) = (service.authority.as_ref(), service.token_reviewer.as_ref())
    else {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            "service_account_enrollment_off",
            "this collector does not enroll agents by ServiceAccount token (it runs without --kubernetes and --agent-service-account, or agents bring their own certificates)".into(),
        ));
    };
    check_csr(&request.csr_pem)?;
    let host = request.host;
    reviewer
        .node(&request.service_account_token, host.as_str())
        .await
        .map_err(|refusal| match refusal {
            // What the API server said is for the log, not for an unauthenticated caller.
            ReviewRefusal::Unavailable(_) => unavailable(refusal),
            _ => {
                warn!(%host, reason = %refusal, "ServiceAccount token refused");
                Refusal(StatusCode::FORBIDDEN, refusal.code(), refusal.to_string())
            }
        })?;
    if service
        .store
        .host_revoked(&host)
        .await
        .map_err(unavailable)?
    {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "host_revoked",
            "this host was deleted; create a join token for it (`dockermon-collector token create --host NAME`) to admit it again".into(),
        ));
    }
    // A node's token may replace an agent that enrolled as this node before, never one a
    // person admitted with a join token under the same name.
    if service
        .store
        .held_by_join_token(&host)
        .await
        .map_err(unavailable)?
    {
        warn!(%host, "ServiceAccount enrollment refused: the name belongs to an agent admitted with a join token");
        return Err(Refusal(
            StatusCode::CONFLICT,
            "host_enrolled_with_join_token",
            format!(
                "{host} is the name of an agent admitted with a join token; delete that host (`dockermon-collector host delete {host}`) before a node of this name can take it"
            ),
        ));
    }
    let (issued, serial) = issue(&service, &request.csr_pem, &host, true).await?;
    replace_others(&service, &host, &serial).await?;
    Ok(Json(issued))
}

pub(super) async fn renew(
    State(service): State<Arc<AgentService>>,
    Extension(peer): Extension<Option<Peer>>,
    Json(request): Json<RenewRequest>,
) -> Result<Json<CertificateIssued>, Refusal> {
    let peer = peer.ok_or_else(|| {
        Refusal(
            StatusCode::UNAUTHORIZED,
            "certificate_required",
            "renewal needs the current client certificate".into(),
        )
    })?;
    if service.authority.is_none() {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            "enrollment_off",
            "this collector does not issue certificates".into(),
        ));
    }
    super::admit(&service, &peer).await?;
    // A renewal keeps how the host was admitted.
    let by_service_account = service
        .store
        .live_certificates(&peer.host, now_ns())
        .await
        .map_err(unavailable)?
        .iter()
        .any(|live| live.serial == peer.serial && live.by_service_account);
    let (issued, _) = issue(&service, &request.csr_pem, &peer.host, by_service_account).await?;
    info!(host = %peer.host, "agent certificate renewed");
    Ok(Json(issued))
}

/// Signs a certificate for `host` and records it, with how its agent was admitted; the
/// answer, and its serial.
async fn issue(
    service: &AgentService,
    csr_pem: &str,
    host: &HostName,
    by_service_account: bool,
) -> Result<(CertificateIssued, String), Refusal> {
    let authority = service.authority.as_ref().expect("checked by the caller");
    let (certificate_pem, record) = authority
        .sign_agent(csr_pem, host, service.agent_cert_ttl)
        .map_err(|e| {
            Refusal(
                StatusCode::BAD_REQUEST,
                "csr_invalid",
                dockermon_agent::process::error_chain(&e),
            )
        })?;
    service
        .store
        .record_certificate(&record, by_service_account, now_ns())
        .await
        .map_err(unavailable)?;
    Ok((
        CertificateIssued {
            host: host.clone(),
            certificate_pem,
            ca_pem: authority.ca_pem().to_owned(),
        },
        record.serial,
    ))
}

/// The refusal for an admission decision, if any.
pub(super) fn refusal_for(admission: Admission) -> Option<Refusal> {
    match admission {
        Admission::Allowed => None,
        Admission::HostRevoked => Some(Refusal(
            StatusCode::FORBIDDEN,
            "host_revoked",
            "this host was deleted; create a new join token to admit it again".into(),
        )),
        Admission::CertificateRevoked => Some(Refusal(
            StatusCode::FORBIDDEN,
            "certificate_revoked",
            "this certificate was revoked; enroll again".into(),
        )),
    }
}
