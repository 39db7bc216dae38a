//! The counter's side of the connection: connect with the pinned vendor key, enroll, log in,
//! resume, and send requests (one per bidirectional stream).
//!
//! About 800 lines, one concern: the client end of docs/PROTOCOL.md. Each type is one stage
//! of a connection (`VendorConn` before sign-in, `Session` after it, `MonitorStream` for the
//! admin monitor); a `Session`'s request builders sign with its request-MAC key and stay with it.

use crate::identity;
use crate::link::driver::{self, LinkHandle};
use crate::link::guard::GuardConfig;
use crate::link::keepalive::KeepaliveEndpoint;
use crate::link::keys::{self, Exporter, SessionKeys};
use crate::tls::PinnedVendor;
use crate::vendor_server::server::transport_config;
use crate::wire::reqmac::MacInput;
use crate::wire::{self, Operation, Request, ResponseError};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default QUIC idle timeout on the counter (the backstop behind the keepalive watchdog).
pub const IDLE_TIMEOUT_MS: u32 = 2_000;
/// How long one request may take before the counter gives up on it.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// How long the handshake may take.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "vendor at {addr} presented key {presented}, but this terminal pins {pinned}; refusing to talk to it"
    )]
    WrongVendorKey {
        addr: SocketAddr,
        presented: String,
        pinned: String,
    },
    #[error("cannot reach the vendor at {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("vendor's enrollment answer does not verify with the pinned key; refusing it")]
    BadEnrollmentSignature,
    #[error("request timed out after {REQUEST_TIMEOUT_MS} ms")]
    Timeout,
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    #[error(transparent)]
    Response(#[from] ResponseError),
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// The vendor's typed error, if this is one.
    pub fn code(&self) -> Option<wire::ErrorCode> {
        match self {
            ClientError::Response(ResponseError::Refused(b)) => Some(b.code),
            _ => None,
        }
    }
}

/// A QUIC client endpoint bound to an ephemeral loopback-or-any port.
pub fn client_endpoint(bind: SocketAddr) -> anyhow::Result<quinn::Endpoint> {
    Ok(quinn::Endpoint::client(bind)?)
}

/// A client endpoint for talking to `vendor`: an ephemeral port on the loopback address of the
/// same family when the vendor is on loopback, otherwise on the unspecified address.
pub fn endpoint_for(vendor: SocketAddr) -> anyhow::Result<quinn::Endpoint> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match (vendor.is_ipv6(), vendor.ip().is_loopback()) {
        (false, true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (false, false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (true, true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (true, false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    client_endpoint(SocketAddr::new(ip, 0))
}

/// An established, pinned connection to the vendor.
#[derive(Debug, Clone)]
pub struct VendorConn {
    pub conn: quinn::Connection,
    pub exporter: Exporter,
    pub addr: SocketAddr,
}

/// Connects and checks the vendor's key against `pinned`.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    pinned: VerifyingKey,
) -> Result<VendorConn, ClientError> {
    connect_with_transport(endpoint, addr, pinned, transport_config(IDLE_TIMEOUT_MS)).await
}

/// A client endpoint for the vendor's fronts (bound as [`endpoint_for`] the first of them).
/// The errors are plain words a clerk can read.
pub fn endpoint_for_fronts(fronts: &[SocketAddr]) -> anyhow::Result<quinn::Endpoint> {
    let first = fronts
        .first()
        .ok_or_else(|| anyhow::anyhow!("no vendor address is configured"))?;
    endpoint_for(*first).map_err(|e| anyhow::anyhow!("cannot open a network endpoint: {e}"))
}

/// Connects to the first of `fronts` (vendor addresses, tried in order) that answers; returns
/// the connection and the index of the front it reached. A front that presents another key
/// than the pinned one ends the search: that is not a fallback.
pub async fn connect_first(
    endpoint: &quinn::Endpoint,
    fronts: &[SocketAddr],
    pinned: VerifyingKey,
) -> Result<(VendorConn, usize), ClientError> {
    let mut last = None;
    for (i, front) in fronts.iter().enumerate() {
        match connect(endpoint, *front, pinned).await {
            Ok(c) => return Ok((c, i)),
            Err(e @ ClientError::WrongVendorKey { .. }) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Other("no vendor address configured".into())))
}

/// [`connect`] with the caller's QUIC transport settings (windows, timeouts) instead of the
/// counter's (`vendor_server::server::transport_config(IDLE_TIMEOUT_MS)`).
pub async fn connect_with_transport(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    pinned: VerifyingKey,
    transport: quinn::TransportConfig,
) -> Result<VendorConn, ClientError> {
    let verifier = PinnedVendor::new(pinned);
    let mut config = crate::tls::client_config(verifier.clone())
        .map_err(|e| ClientError::Other(e.to_string()))?;
    config.transport_config(Arc::new(transport));
    let unreachable = |reason: String| ClientError::Unreachable { addr, reason };
    let connecting = endpoint
        .connect_with(config, addr, crate::tls::VENDOR_CERT_NAME)
        .map_err(|e| unreachable(e.to_string()))?;
    let result = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connecting).await;
    let conn = match result {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            if let Some(presented) = verifier.presented_mismatch() {
                return Err(ClientError::WrongVendorKey {
                    addr,
                    presented,
                    pinned: identity::fingerprint(&pinned),
                });
            }
            return Err(unreachable(e.to_string()));
        }
        Err(_) => {
            return Err(unreachable(format!(
                "no answer within {CONNECT_TIMEOUT_MS} ms"
            )));
        }
    };
    let mut out = [0u8; keys::EXPORTER_BYTES];
    conn.export_keying_material(&mut out, keys::EXPORTER_LABEL, keys::EXPORTER_CONTEXT)
        .map_err(|_| ClientError::Other("TLS exporter unavailable".into()))?;
    Ok(VendorConn {
        conn,
        exporter: Exporter(out),
        addr,
    })
}

/// What enrollment yields; stored in the terminal's data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub terminal_id: u64,
    pub account_id: u64,
    pub vendor_time_ms: u64,
}

impl VendorConn {
    /// Sends raw bytes as one request and returns the raw response. For tests of bad input.
    pub async fn request_raw(&self, bytes: &[u8]) -> Result<Vec<u8>, ClientError> {
        let fut = async {
            let (mut send, mut recv) = self
                .conn
                .open_bi()
                .await
                .map_err(|e| ClientError::ConnectionLost(e.to_string()))?;
            send.write_all(bytes)
                .await
                .map_err(|e| ClientError::ConnectionLost(e.to_string()))?;
            let _ = send.finish();
            recv.read_to_end(wire::RESPONSE_BYTES_MAX)
                .await
                .map_err(|e| ClientError::ConnectionLost(e.to_string()))
        };
        tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), fut)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    pub async fn request<T: DeserializeOwned>(&self, request: &Request) -> Result<T, ClientError> {
        let bytes = self.request_raw(&wire::encode_request(request)).await?;
        Ok(wire::decode_response(&bytes)?)
    }

    /// `scan` (no session needed): asks the vendor for the state of the piece this indicium
    /// payload names, and records the sighting. For postal verifiers (`frank verify --vendor`).
    pub async fn scan(&self, payload: &[u8]) -> Result<wire::Scanned, ClientError> {
        self.request(&Request::Scan(wire::ScanRequest {
            payload: payload.to_vec(),
        }))
        .await
    }

    /// Enrolls this terminal's device key, verifying the vendor's signed answer.
    pub async fn enroll(
        &self,
        code: &str,
        name: &str,
        device_key: &SigningKey,
        pinned: &VerifyingKey,
    ) -> Result<Enrollment, ClientError> {
        let challenge: [u8; 8] = rand::random();
        let answer: wire::Enrolled = self
            .request(&Request::Enroll(wire::Enroll {
                code: code.to_string(),
                name: name.to_string(),
                device_key: device_key.verifying_key().as_bytes().to_vec(),
                challenge: challenge.to_vec(),
            }))
            .await?;
        let sig = Signature::from_slice(&answer.signature)
            .map_err(|_| ClientError::BadEnrollmentSignature)?;
        let transcript = keys::enroll_transcript(&challenge, &self.exporter, answer.vendor_time_ms);
        pinned
            .verify(&transcript, &sig)
            .map_err(|_| ClientError::BadEnrollmentSignature)?;
        Ok(Enrollment {
            terminal_id: answer.terminal_id,
            account_id: answer.account_id,
            vendor_time_ms: answer.vendor_time_ms,
        })
    }

    fn proof(&self, device_key: &SigningKey, terminal_id: u64, clerk: &str) -> Vec<u8> {
        device_key
            .sign(&keys::login_transcript(&self.exporter, terminal_id, clerk))
            .to_bytes()
            .to_vec()
    }

    /// Logs a clerk in; the session is bound to this connection.
    pub async fn login(
        &self,
        terminal_id: u64,
        device_key: &SigningKey,
        clerk: &str,
        password: &str,
    ) -> Result<Session, ClientError> {
        let answer: wire::LoggedIn = self
            .request(&Request::Login(wire::Login {
                terminal_id,
                clerk: clerk.to_string(),
                password: password.to_string(),
                proof: self.proof(device_key, terminal_id, clerk),
            }))
            .await?;
        let keys = keys::derive_session_keys(
            &self.exporter,
            answer.session_id,
            terminal_id,
            &answer.clerk,
        );
        Ok(Session::new(self.clone(), terminal_id, answer, keys))
    }

    /// Resumes `previous` on this (new) connection with a fresh device proof.
    pub async fn resume(
        &self,
        previous: &Session,
        device_key: &SigningKey,
    ) -> Result<Session, ClientError> {
        let answer: wire::LoggedIn = self
            .request(&Request::Resume(wire::Resume {
                session_id: previous.session_id,
                terminal_id: previous.terminal_id,
                proof: self.proof(device_key, previous.terminal_id, &previous.clerk),
                resume_mac: keys::resume_mac(&previous.keys.resume, &self.exporter).to_vec(),
            }))
            .await?;
        let mut keys = keys::derive_session_keys(
            &self.exporter,
            answer.session_id,
            previous.terminal_id,
            &answer.clerk,
        );
        keys.resume = previous.keys.resume.clone();
        Ok(Session::new(
            self.clone(),
            previous.terminal_id,
            answer,
            keys,
        ))
    }
}

/// A logged-in session on one connection.
#[derive(Debug, Clone)]
pub struct Session {
    pub conn: VendorConn,
    pub terminal_id: u64,
    pub session_id: u64,
    pub account_id: u64,
    pub clerk: String,
    /// The office's name as the vendor knows it (its account's name), control characters
    /// dropped: it is shown on screen and printed on receipts.
    pub office: String,
    pub guard: GuardConfig,
    pub request_clock_skew_ms_max: u64,
    /// Session keys. Exposed for diagnostics and protocol tests; never log them.
    pub keys: SessionKeys,
}

impl Session {
    fn new(
        conn: VendorConn,
        terminal_id: u64,
        answer: wire::LoggedIn,
        keys: SessionKeys,
    ) -> Session {
        Session {
            conn,
            terminal_id,
            session_id: answer.session_id,
            account_id: answer.account_id,
            clerk: answer.clerk,
            office: answer.office.chars().filter(|c| !c.is_control()).collect(),
            guard: GuardConfig {
                keepalive_interval_ms: answer.keepalive_interval_ms,
                detect_multiplier: answer.detect_multiplier,
                up_after_keepalives: answer.up_after_keepalives,
            },
            request_clock_skew_ms_max: answer.request_clock_skew_ms_max,
            keys,
        }
    }

    /// Starts the keepalive link on this session's connection.
    pub fn start_link(&self) -> Result<LinkHandle, ClientError> {
        self.guard.validate().map_err(ClientError::Other)?;
        let endpoint = KeepaliveEndpoint::new(
            self.session_id,
            self.keys.keepalive_counter_to_vendor.clone(),
            self.keys.keepalive_vendor_to_counter.clone(),
            Instant::now(),
            self.guard.detect_window(),
        );
        Ok(driver::spawn(
            self.conn.conn.clone(),
            endpoint,
            self.guard,
            self.session_id,
        ))
    }

    /// A MAC'd `clock_check`: proves keys and clock agree with the vendor's.
    pub async fn clock_check(
        &self,
        client_time_ms: u64,
    ) -> Result<wire::ClockChecked, ClientError> {
        let request_id = crate::clock::fresh_request_id().to_bytes();
        let mac = MacInput {
            operation: Operation::ClockCheck,
            request_id,
            amount_cents: 0,
            client_time_ms,
            clerk: &self.clerk,
            destination: "",
        }
        .sign(&self.keys.request_mac)
        .map_err(|e| ClientError::Other(e.to_string()))?;
        self.conn
            .request(&Request::ClockCheck(wire::ClockCheck {
                request_id: request_id.to_vec(),
                client_time_ms,
                mac: mac.to_vec(),
            }))
            .await
    }

    fn mac(
        &self,
        operation: Operation,
        request_id: [u8; 16],
        amount_cents: u64,
        client_time_ms: u64,
        destination: &str,
    ) -> Result<Vec<u8>, ClientError> {
        MacInput {
            operation,
            request_id,
            amount_cents,
            client_time_ms,
            clerk: &self.clerk,
            destination,
        }
        .sign(&self.keys.request_mac)
        .map(|m| m.to_vec())
        .map_err(|e| ClientError::Other(e.to_string()))
    }

    /// A signed `fund` request (see [`Self::send`]).
    pub fn fund_request(
        &self,
        request_id: [u8; 16],
        client_time_ms: u64,
        amount_cents: u64,
        method: wire::FundMethod,
    ) -> Result<Request, ClientError> {
        let mac = self.mac(
            Operation::Fund,
            request_id,
            amount_cents,
            client_time_ms,
            &method.destination(),
        )?;
        Ok(Request::Fund(wire::Fund {
            request_id: request_id.to_vec(),
            client_time_ms,
            amount_cents,
            method,
            mac,
        }))
    }

    /// A signed `authorize` request.
    pub fn authorize_request(
        &self,
        request_id: [u8; 16],
        client_time_ms: u64,
        amount_cents: u64,
        item: wire::WireItem,
        origin_zip: &str,
    ) -> Result<Request, ClientError> {
        let typed = item
            .to_item()
            .map_err(|e| ClientError::Other(e.to_string()))?;
        let destination = wire::Authorize::destination(&typed, origin_zip);
        let mac = self.mac(
            Operation::Authorize,
            request_id,
            amount_cents,
            client_time_ms,
            &destination,
        )?;
        Ok(Request::Authorize(wire::Authorize {
            request_id: request_id.to_vec(),
            client_time_ms,
            amount_cents,
            item,
            origin_zip: origin_zip.to_string(),
            mac,
        }))
    }

    /// A signed `commit` request.
    pub fn commit_request(
        &self,
        request_id: [u8; 16],
        client_time_ms: u64,
        piece_serial: u64,
    ) -> Result<Request, ClientError> {
        let dest = wire::piece_destination(piece_serial);
        let mac = self.mac(Operation::Commit, request_id, 0, client_time_ms, &dest)?;
        Ok(Request::Commit(wire::Commit {
            request_id: request_id.to_vec(),
            client_time_ms,
            piece_serial,
            mac,
        }))
    }

    /// A signed `void` request.
    pub fn void_request(
        &self,
        request_id: [u8; 16],
        client_time_ms: u64,
        piece_serial: u64,
        reached_printer: bool,
    ) -> Result<Request, ClientError> {
        let dest = wire::void_destination(piece_serial, reached_printer);
        let mac = self.mac(Operation::Void, request_id, 0, client_time_ms, &dest)?;
        Ok(Request::Void(wire::Void {
            request_id: request_id.to_vec(),
            client_time_ms,
            piece_serial,
            reached_printer,
            mac,
        }))
    }

    /// A signed `refund_request` request.
    pub fn refund_request(
        &self,
        request_id: [u8; 16],
        client_time_ms: u64,
        piece_serial: u64,
    ) -> Result<Request, ClientError> {
        let dest = wire::piece_destination(piece_serial);
        let mac = self.mac(
            Operation::RefundRequest,
            request_id,
            0,
            client_time_ms,
            &dest,
        )?;
        Ok(Request::RefundRequest(wire::RefundRequest {
            request_id: request_id.to_vec(),
            client_time_ms,
            piece_serial,
            mac,
        }))
    }

    /// A signed `tender` request: how the customer paid for a basket of pieces of `meter`.
    #[allow(clippy::too_many_arguments)]
    pub fn tender_request(
        &self,
        request_id: [u8; 16],
        client_time_ms: u64,
        meter: &str,
        pieces: &[u64],
        kind: &str,
        amount_tendered_cents: u64,
        change_cents: u64,
    ) -> Result<Request, ClientError> {
        let dest = wire::TenderRequest::destination(kind, change_cents, meter, pieces);
        let mac = self.mac(
            Operation::Tender,
            request_id,
            amount_tendered_cents,
            client_time_ms,
            &dest,
        )?;
        Ok(Request::Tender(wire::TenderRequest {
            request_id: request_id.to_vec(),
            client_time_ms,
            meter: meter.to_string(),
            pieces: pieces.to_vec(),
            kind: kind.to_string(),
            amount_tendered_cents,
            change_cents,
            mac,
        }))
    }

    /// A signed `refund_decide` request (supervisors).
    pub fn refund_decide_request(
        &self,
        request_id: [u8; 16],
        client_time_ms: u64,
        meter: &str,
        piece_serial: u64,
        approve: bool,
    ) -> Result<Request, ClientError> {
        let dest = wire::RefundDecide::destination(meter, piece_serial, approve);
        let mac = self.mac(
            Operation::RefundDecide,
            request_id,
            0,
            client_time_ms,
            &dest,
        )?;
        Ok(Request::RefundDecide(wire::RefundDecide {
            request_id: request_id.to_vec(),
            client_time_ms,
            meter: meter.to_string(),
            piece_serial,
            approve,
            mac,
        }))
    }

    /// The end-of-day report of `day` (`YYYY-MM-DD`, UTC) for the session's clerk
    /// (`scope = "clerk"`), terminal (`"terminal"`) or the whole office (`"office"`,
    /// supervisors only).
    pub async fn day_report(
        &self,
        day: &str,
        scope: &str,
    ) -> Result<crate::ledger::report::DayReport, ClientError> {
        self.send(&Request::DayReport(wire::DayReportRequest {
            day: day.to_string(),
            scope: scope.to_string(),
        }))
        .await
    }

    /// Supervisors: refund requests awaiting a decision, oldest first.
    pub async fn refunds_awaiting(&self, limit: u32) -> Result<wire::PieceList, ClientError> {
        self.send(&Request::RefundsAwaiting(wire::RefundsAwaitingRequest {
            limit,
        }))
        .await
    }

    /// Sends any request on this session's connection. Retrying a money request means sending
    /// the same `Request` again: the ledger answers the first result.
    pub async fn send<T: DeserializeOwned>(&self, request: &Request) -> Result<T, ClientError> {
        self.conn.request(request).await
    }

    pub async fn fund(
        &self,
        request_id: [u8; 16],
        amount_cents: u64,
        method: wire::FundMethod,
    ) -> Result<wire::Funded, ClientError> {
        let r = self.fund_request(request_id, crate::clock::unix_ms(), amount_cents, method)?;
        self.send(&r).await
    }

    pub async fn authorize(
        &self,
        request_id: [u8; 16],
        amount_cents: u64,
        item: wire::WireItem,
        origin_zip: &str,
    ) -> Result<wire::Authorized, ClientError> {
        let r = self.authorize_request(
            request_id,
            crate::clock::unix_ms(),
            amount_cents,
            item,
            origin_zip,
        )?;
        self.send(&r).await
    }

    pub async fn commit(
        &self,
        request_id: [u8; 16],
        piece_serial: u64,
    ) -> Result<wire::PieceDone, ClientError> {
        let r = self.commit_request(request_id, crate::clock::unix_ms(), piece_serial)?;
        self.send(&r).await
    }

    pub async fn void(
        &self,
        request_id: [u8; 16],
        piece_serial: u64,
        reached_printer: bool,
    ) -> Result<wire::PieceDone, ClientError> {
        let r = self.void_request(
            request_id,
            crate::clock::unix_ms(),
            piece_serial,
            reached_printer,
        )?;
        self.send(&r).await
    }

    pub async fn request_refund(
        &self,
        request_id: [u8; 16],
        piece_serial: u64,
    ) -> Result<wire::PieceDone, ClientError> {
        let r = self.refund_request(request_id, crate::clock::unix_ms(), piece_serial)?;
        self.send(&r).await
    }

    pub async fn balance(&self) -> Result<wire::Balance, ClientError> {
        self.send(&Request::Balance(wire::BalanceRequest {})).await
    }

    pub async fn quote(
        &self,
        item: wire::PostageItem,
        origin_zip: &str,
    ) -> Result<wire::Quoted, ClientError> {
        self.send(&Request::Quote(wire::QuoteRequest {
            item,
            origin_zip: origin_zip.to_string(),
        }))
        .await
    }

    pub async fn statement(
        &self,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<wire::StatementBody, ClientError> {
        self.send(&Request::Statement(wire::StatementRequest {
            from_ms,
            to_ms,
        }))
        .await
    }

    /// One piece of the account (state, refund status).
    pub async fn piece(&self, piece_serial: u64) -> Result<wire::PieceInfo, ClientError> {
        self.send(&Request::Piece(wire::PieceRequest { piece_serial }))
            .await
    }

    /// The account's recent pieces, newest first (the history screen). `limit` is
    /// 1..=[`wire::PIECES_LIST_MAX`]; for the next page pass the lowest serial received as
    /// `before_serial`.
    pub async fn pieces(
        &self,
        limit: u32,
        before_serial: Option<u64>,
    ) -> Result<wire::PieceList, ClientError> {
        self.send(&Request::Pieces(wire::PiecesRequest {
            limit,
            before_serial,
        }))
        .await
    }

    pub async fn ping(&self) -> Result<wire::Pong, ClientError> {
        self.conn.request(&Request::Ping(wire::Ping {})).await
    }

    /// Reports this terminal's printer to the vendor (`printer_status`), which shows it to
    /// supervisors watching the account. Send it on every change and after each (re)login.
    pub async fn report_printer_status(
        &self,
        report: wire::PrinterReport,
    ) -> Result<(), ClientError> {
        report
            .validate()
            .map_err(|e| ClientError::Response(ResponseError::Refused(e)))?;
        let _: wire::PrinterRecorded = self.send(&Request::PrinterStatus(report)).await?;
        Ok(())
    }

    /// Subscribes to the account's terminals (`subscribe_terminals`; the clerk must be a
    /// supervisor). Returns once the snapshot arrived; read updates with
    /// [`MonitorStream::next`]. A refusal (`forbidden`, `busy`) is the vendor's typed error.
    pub async fn subscribe_terminals(
        &self,
    ) -> Result<(MonitorStream, wire::MonitorFrame), ClientError> {
        let fut = async {
            let (mut send, recv) = self
                .conn
                .conn
                .open_bi()
                .await
                .map_err(|e| ClientError::ConnectionLost(e.to_string()))?;
            send.write_all(&wire::encode_request(&Request::SubscribeTerminals(
                wire::SubscribeTerminals {},
            )))
            .await
            .map_err(|e| ClientError::ConnectionLost(e.to_string()))?;
            let _ = send.finish();
            let mut stream = MonitorStream {
                recv,
                reader: wire::monitor::FrameReader::new(),
                _send: send,
            };
            match stream.next().await? {
                Some(f) if f.is_snapshot() => Ok((stream, f)),
                Some(f) => Err(ClientError::Response(ResponseError::Malformed(format!(
                    "first monitor frame is {:?}, not a snapshot",
                    f.kind
                )))),
                None => Err(ClientError::ConnectionLost(
                    "the vendor ended the subscription before its snapshot".into(),
                )),
            }
        };
        tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), fut)
            .await
            .map_err(|_| ClientError::Timeout)?
    }
}

/// Bytes read from a monitor stream per call.
const MONITOR_READ_BYTES_MAX: usize = 64 * 1024;

/// A live `subscribe_terminals` stream.
#[derive(Debug)]
pub struct MonitorStream {
    recv: quinn::RecvStream,
    reader: wire::monitor::FrameReader,
    /// Kept so the stream is not reset while the subscription lives.
    _send: quinn::SendStream,
}

impl MonitorStream {
    /// The next frame as pushed by the vendor; `Ok(None)` when the vendor ended the stream.
    /// Waits as long as it takes: the vendor pushes at least every `monitor_push_interval_ms`
    /// while a terminal is connected, and the caller bounds the wait if it needs to.
    pub async fn next(&mut self) -> Result<Option<wire::MonitorFrame>, ClientError> {
        let framing = |e: wire::monitor::FrameError| match e {
            wire::monitor::FrameError::Response(r) => ClientError::Response(r),
            other => ClientError::Response(ResponseError::Malformed(other.to_string())),
        };
        loop {
            if let Some(f) = self.reader.next_frame().map_err(framing)? {
                return Ok(Some(f));
            }
            match self
                .recv
                .read_chunk(MONITOR_READ_BYTES_MAX, true)
                .await
                .map_err(|e| ClientError::ConnectionLost(e.to_string()))?
            {
                Some(chunk) => self.reader.push(&chunk.bytes).map_err(framing)?,
                None => {
                    self.reader.finish().map_err(framing)?;
                    return Ok(None);
                }
            }
        }
    }
}
