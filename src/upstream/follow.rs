//! A discovered endpoint that follows the credential's identity (the URL-less Core start).
//!
//! Before each client message, [`Follow`] asks the [`CoreEndpoint`] which endpoint the
//! identity in use now belongs to. When the AccessKey identity changed (another `aliyun`
//! profile became current), that is another account's Core endpoint: the old transports are
//! ended, and the client's `initialize` and `notifications/initialized`, kept from the start
//! of the run, are replayed there under a bridge id (the relay drops answers to ids it never
//! opened), so the client's session carries on against the new account without noticing
//! more than the tools it now sees. A failed discovery fails the message; the previous
//! account's endpoint is never used with the new identity.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::info;

use super::{Upstream, UpstreamError};
use crate::auth::access_key::discovery::CoreEndpoint;
use crate::jsonrpc::{self, Id, Message};
use crate::net::display_url;

pub struct Follow {
    core: Arc<CoreEndpoint>,
    /// The client's handshake, replayed on a new endpoint.
    initialize: Mutex<Option<Message>>,
    initialized: Mutex<Option<Message>>,
    /// Held while moving, so messages behind the move wait for the replayed handshake.
    moving: tokio::sync::Mutex<()>,
    replays: AtomicU64,
}

impl Follow {
    pub fn new(core: Arc<CoreEndpoint>) -> Follow {
        Follow {
            core,
            initialize: Mutex::new(None),
            initialized: Mutex::new(None),
            moving: tokio::sync::Mutex::new(()),
            replays: AtomicU64::new(0),
        }
    }

    /// Keeps the handshake, and moves `up` first when the identity's endpoint changed.
    pub(super) async fn before_send(
        &self,
        up: &Upstream,
        msg: &Message,
    ) -> Result<(), UpstreamError> {
        let is_initialize = msg.is_request() && msg.method_is("initialize");
        if is_initialize {
            *self.initialize.lock().unwrap() = Some(msg.clone());
        } else if msg.method_is("notifications/initialized") {
            *self.initialized.lock().unwrap() = Some(msg.clone());
        }
        let url = self.core.current().await?;
        if up.url() == url {
            return Ok(());
        }
        let _moving = self.moving.lock().await;
        if !up.rebase(&url).await {
            return Ok(()); // moved by the message ahead of this one
        }
        info!(endpoint = %display_url(&url), "moved to the new identity's Core endpoint");
        if is_initialize {
            return Ok(()); // the client is starting a session anyway
        }
        let init = self.initialize.lock().unwrap().clone();
        let Some(init) = init else {
            return Ok(());
        };
        let n = self.replays.fetch_add(1, Ordering::Relaxed);
        let id = Id::from_json(&format!("\"alibridge-follow-{n}\""));
        let replay = jsonrpc::with_id(&init.bytes, &id)
            .and_then(|b| Message::parse(b).ok())
            .ok_or_else(|| UpstreamError::Session {
                url: display_url(&url),
                detail: "the client's initialize could not be replayed".into(),
            })?;
        up.send_here(replay).await?;
        let initialized = self.initialized.lock().unwrap().clone();
        if let Some(note) = initialized {
            up.send_here(note).await?;
        }
        Ok(())
    }
}
