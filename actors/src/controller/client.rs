//! The side of brokers and the admin CLI: sends a request to the
//! controller leader, following `NotLeader` answers (when they name one of
//! the listed addresses) and trying every listed controller in turn.
//! With credentials ([`ControllerClient::with_credentials`]) every request
//! is signed afresh for each send (a retry to another controller, or the
//! same one, is a new signature, never a replay).

use std::sync::Arc;
use std::time::Duration;

use super::proto::{self, CallError, Conn, Request, Response};

/// A client of a controller group (`controller_addr = "a;b;c"`).
pub struct ControllerClient {
    addrs: Vec<String>,
    timeout: Duration,
    /// The leader as last heard, and an open connection to whom we talked last.
    leader: Option<String>,
    conn: Option<(String, Conn)>,
    /// Signs every request not signed already.
    creds: Option<Arc<skylark_codec::Credentials>>,
}

impl ControllerClient {
    /// `addrs`: `HOST:PORT` separated by `;`.
    pub fn new(addrs: &str, timeout: Duration) -> ControllerClient {
        ControllerClient {
            addrs: addrs
                .split(';')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect(),
            timeout,
            leader: None,
            conn: None,
            creds: None,
        }
    }

    /// Signs every request with `creds` (a broker: the cluster's broker
    /// credential); `None` sends them as they are.
    pub fn with_credentials(
        mut self,
        creds: Option<Arc<skylark_codec::Credentials>>,
    ) -> ControllerClient {
        self.creds = creds;
        self
    }

    /// The controller addresses.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// Asks one controller (whichever answers; for `Status`).
    pub async fn ask(&mut self, addr: &str, req: &Request) -> Result<Response, CallError> {
        let signed;
        let req = match (&self.creds, req) {
            (Some(c), r) if !matches!(r, Request::Signed(_)) => {
                signed = r.signed(c).map_err(|reason| CallError {
                    addr: addr.to_string(),
                    reason,
                })?;
                &signed
            }
            _ => req,
        };
        let mut conn = match self.conn.take() {
            Some((a, c)) if a == addr => c,
            _ => proto::connect(addr, self.timeout).await?,
        };
        let r = proto::call(&mut conn, addr, req, self.timeout).await?;
        self.conn = Some((addr.to_string(), conn));
        Ok(r)
    }

    /// Sends `req` to the leader; answers its response (never `NotLeader`
    /// unless no controller knows a leader).
    pub async fn leader_request(&mut self, req: &Request) -> Result<Response, CallError> {
        let mut tried: Vec<String> = Vec::new();
        let mut last_err = None;
        let mut not_leader = 0;
        let mut candidates: Vec<String> = self.leader.iter().cloned().collect();
        candidates.extend(self.addrs.iter().cloned());
        let mut i = 0;
        // Bounded: every address once, plus leader hints.
        while i < candidates.len() && tried.len() < self.addrs.len() * 2 + 2 {
            let addr = candidates[i].clone();
            i += 1;
            if tried.contains(&addr) {
                continue;
            }
            tried.push(addr.clone());
            match self.ask(&addr, req).await {
                Ok(Response::NotLeader { leader }) => {
                    // A hint outside the configured list (a controller
                    // reached through a proxy or NAT under another
                    // address) is not followed: the list is tried in turn.
                    if let Some(l) = leader.filter(|l| self.addrs.contains(l)) {
                        if !tried.contains(&l) {
                            candidates.insert(i, l);
                        }
                    }
                    not_leader += 1;
                    last_err = Some(CallError {
                        addr,
                        reason: "not the leader".into(),
                    });
                }
                Ok(r) => {
                    self.leader = Some(addr);
                    return Ok(r);
                }
                Err(e) => {
                    if self.leader.as_deref() == Some(addr.as_str()) {
                        self.leader = None;
                    }
                    last_err = Some(e);
                }
            }
        }
        let err = last_err.unwrap_or(CallError {
            addr: self.addrs.join(";"),
            reason: "no controller address".into(),
        });
        if not_leader == 0 {
            return Err(err);
        }
        // Reachable controllers, none of them the leader: an election (not
        // an outage) is the likely cause, and the text must not say
        // "unreachable" of a controller that answered.
        Err(CallError {
            addr: self.addrs.join(";"),
            reason: format!(
                "no controller is the leader now ({not_leader} answered \"not the leader\": an election may be under way); last: {} {}",
                err.addr, err.reason
            ),
        })
    }
}
