//! [`Farm`]: N named app servers on fixed addresses, each stoppable and restartable.
//!
//! The app servers hold a [`FarmHandle`] so their `/demo/*` endpoints can act on any app of
//! the farm, while the farm holds the app servers' tasks. The handle is a `Weak`, which breaks
//! that cycle: dropping the `Farm` drops every app's stop sender, and that stops them all.
//!
//! Knows sockets and tasks only; the HTTP side of control lives in `control`.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Weak},
};

use tokio::{net::TcpListener, sync::Mutex, sync::watch, task::JoinHandle};

use super::app;

/// A set of demo app servers that can be stopped and started by name.
pub struct Farm {
    inner: Arc<Inner>,
}

/// What the farm and its control handles share.
struct Inner {
    /// One slot per app, in the order given. An async mutex, held across a stop's wait for the
    /// accept loop, so a start cannot race a stop for the same address.
    apps: Mutex<Vec<Slot>>,
}

/// One app server of the farm, running or not.
struct Slot {
    name: String,
    /// The bound address (the real port when `:0` was asked for), reused by a restart.
    addr: SocketAddr,
    running: Option<Running>,
}

/// A running app server.
struct Running {
    stop: watch::Sender<bool>,
    /// The accept loop; it ends once the listener is closed.
    accept_loop: JoinHandle<()>,
}

/// A farm as its own app servers see it: weak, so they do not keep it alive.
#[derive(Clone)]
pub(crate) struct FarmHandle(Weak<Inner>);

impl FarmHandle {
    /// The farm, unless it has been dropped.
    pub(crate) fn farm(&self) -> Option<Farm> {
        self.0.upgrade().map(|inner| Farm { inner })
    }
}

impl Farm {
    /// Binds every address, then starts one app server per `(name, addr)`. Fails without
    /// starting anything if a name repeats or an address cannot be bound.
    pub async fn start(apps: Vec<(String, SocketAddr)>) -> io::Result<Farm> {
        let mut bound = Vec::with_capacity(apps.len());
        for (name, addr) in apps {
            if bound.iter().any(|(_, seen, _)| *seen == name) {
                let message = format!("app server name {name:?} is used twice");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
            }
            let listener = TcpListener::bind(addr).await.map_err(|error| {
                let message = format!("app server {name:?} cannot bind {addr}: {error}");
                io::Error::new(error.kind(), message)
            })?;
            bound.push((listener.local_addr()?, name, listener));
        }

        let farm = Farm {
            inner: Arc::new(Inner {
                apps: Mutex::new(Vec::with_capacity(bound.len())),
            }),
        };
        let handle = farm.handle();
        let mut slots = farm.inner.apps.lock().await;
        for (addr, name, listener) in bound {
            let running = Some(launch(&name, listener, handle.clone()));
            slots.push(Slot {
                name,
                addr,
                running,
            });
        }
        drop(slots);
        Ok(farm)
    }

    /// Stops the app server `name`: when this returns its listener is closed, so new
    /// connections are refused, and its open connections are being cut. Stopping a stopped
    /// server does nothing. `NotFound` if no app has that name.
    pub async fn stop(&self, name: &str) -> io::Result<()> {
        let mut slots = self.inner.apps.lock().await;
        let slot = find(&mut slots, name)?;
        if let Some(running) = slot.running.take() {
            running.stop.send_replace(true);
            // The accept loop returns as soon as it sees the flag; its connections do not
            // hold it up, so an app can stop itself from one of its own requests.
            if let Err(error) = running.accept_loop.await {
                tracing::warn!(app = name, %error, "app server task failed");
            }
        }
        Ok(())
    }

    /// Starts the stopped app server `name` again on the same address. Starting a running
    /// server does nothing. `NotFound` if no app has that name; the bind error if the address
    /// has been taken meanwhile.
    pub async fn start_again(&self, name: &str) -> io::Result<()> {
        let handle = self.handle();
        let mut slots = self.inner.apps.lock().await;
        let slot = find(&mut slots, name)?;
        if slot.running.is_none() {
            let listener = TcpListener::bind(slot.addr).await?;
            slot.running = Some(launch(&slot.name, listener, handle));
        }
        Ok(())
    }

    /// Every app server in the order given at start: name, address, running.
    pub async fn status(&self) -> Vec<(String, SocketAddr, bool)> {
        let slots = self.inner.apps.lock().await;
        slots
            .iter()
            .map(|slot| (slot.name.clone(), slot.addr, slot.running.is_some()))
            .collect()
    }

    fn handle(&self) -> FarmHandle {
        FarmHandle(Arc::downgrade(&self.inner))
    }
}

/// Spawns the app server `name` on `listener`.
fn launch(name: &str, listener: TcpListener, farm: FarmHandle) -> Running {
    let (stop, stopped) = watch::channel(false);
    let accept_loop = tokio::spawn(app::serve_in_farm(listener, name.into(), stopped, farm));
    Running { stop, accept_loop }
}

fn find<'s>(slots: &'s mut [Slot], name: &str) -> io::Result<&'s mut Slot> {
    slots
        .iter_mut()
        .find(|slot| slot.name == name)
        .ok_or_else(|| {
            let message = format!("no app server named {name:?}");
            io::Error::new(io::ErrorKind::NotFound, message)
        })
}
