//! The dashboard's connections to the brokers: one [`RpcClient`] per broker
//! address, opened (with the handshake) on first use and again after it
//! closed; signed with the NameServer's `access_key` and over TLS with its
//! `tls_ca_file` when set. The NameServer asks brokers only over the admin
//! RPCs `skylark admin` uses; nothing here is on a broker's send or pull
//! path.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use skylark_codec::{Handshake, ProtocolError, Rpc};

use crate::remoting::RpcClient;

/// Connections to brokers, shared by the futures of one actor (one thread).
#[derive(Clone, Default)]
pub struct BrokerPool {
    conns: Rc<RefCell<HashMap<String, RpcClient>>>,
    timeout: Duration,
    /// Signs every request when the brokers have ACL on.
    creds: Option<std::sync::Arc<skylark_codec::Credentials>>,
    /// TLS to the brokers (the NameServer's `tls_ca_file`).
    tls: Option<crate::tls::ClientTls>,
}

impl BrokerPool {
    pub fn new(timeout: Duration) -> Self {
        BrokerPool {
            conns: Rc::default(),
            timeout,
            creds: None,
            tls: None,
        }
    }

    /// The same pool connecting over TLS when `tls` is given.
    pub fn with_tls(mut self, tls: Option<crate::tls::ClientTls>) -> Self {
        self.tls = tls;
        self
    }

    /// The same pool signing its requests with `creds`.
    pub fn with_credentials(
        mut self,
        creds: Option<std::sync::Arc<skylark_codec::Credentials>>,
    ) -> Self {
        self.creds = creds;
        self
    }

    async fn client(&self, addr: &str) -> Result<RpcClient, String> {
        let held = self.conns.borrow().get(addr).cloned();
        if let Some(c) = held.filter(RpcClient::is_connected) {
            return Ok(c);
        }
        let max_frame = skylark_codec::DEFAULT_MAX_FRAME_SIZE;
        let c = RpcClient::connect_tls(addr, self.timeout, max_frame, self.tls.as_ref())
            .await
            .map_err(|e| format!("{addr}: {e}"))?
            .with_credentials(self.creds.clone());
        let hello = Handshake::new("skylark-dashboard", env!("CARGO_PKG_VERSION"));
        if let Err(e) = c.call(&hello).await {
            c.close();
            return Err(format!("{addr}: handshake: {e}"));
        }
        if let Some(old) = self.conns.borrow_mut().insert(addr.to_string(), c.clone()) {
            old.close();
        }
        Ok(c)
    }

    /// Calls `req` on the broker at `addr`; the error names the broker.
    pub async fn call<R: Rpc>(&self, addr: &str, req: &R) -> Result<R::Response, String> {
        self.call_answer(addr, req)
            .await?
            .map_err(|w| format!("{addr}: {}", ProtocolError::Remote(w)))
    }

    /// [`call`](Self::call), with the broker's error answer kept typed
    /// (`Ok(Err(w))`); `Err` when the broker could not be asked.
    pub async fn call_answer<R: Rpc>(
        &self,
        addr: &str,
        req: &R,
    ) -> Result<Result<R::Response, skylark_codec::WireError>, String> {
        let c = self.client(addr).await?;
        match c.call(req).await {
            Ok(r) => Ok(Ok(r)),
            Err(ProtocolError::Remote(w)) => Ok(Err(w)),
            Err(e) => {
                // A transport failure: reconnect next time.
                self.conns.borrow_mut().remove(addr);
                c.close();
                Err(format!("{addr}: {e}"))
            }
        }
    }

    /// Closes the connections to brokers no longer in `live`.
    pub fn retain(&self, live: &[String]) {
        self.conns.borrow_mut().retain(|addr, c| {
            let keep = live.iter().any(|l| l == addr);
            if !keep {
                c.close();
            }
            keep
        });
    }

    /// Closes every connection.
    pub fn close_all(&self) {
        for (_, c) in self.conns.borrow_mut().drain() {
            c.close();
        }
    }
}
