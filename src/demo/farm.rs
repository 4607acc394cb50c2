//! [`Farm`]: N named app servers on fixed addresses, each stoppable and restartable.
//!
//! One task owns the app servers (their stop flags and accept loops) and carries out the
//! [`Command`]s sent on the farm's control channel, one at a time, so a start cannot race a
//! stop for the same address. The orders come from the [`Farm`] handle and from every app
//! server's `/demo/*` endpoints, which hold only the channel's sending end: no app server
//! holds the farm. Dropping the `Farm` ends the task, which drops every app's stop sender, and
//! that stops them all.
//!
//! Knows sockets and tasks only; the HTTP side of control lives in `control`.

use std::{io, net::SocketAddr};

use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use super::app;
use super::control::{AppStatus, Command, FarmControl};

/// A set of demo app servers that can be stopped and started by name.
pub struct Farm {
    control: FarmControl,
    /// Dropped with the farm, which tells the task to stop every app server and end.
    _owner: oneshot::Sender<()>,
}

/// What the farm's task owns.
struct Apps {
    /// One slot per app, in the order given.
    slots: Vec<Slot>,
    /// Handed to each app server (re)started, for its `/demo/*` endpoints.
    control: FarmControl,
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

        let (control, commands) = FarmControl::channel();
        let slots = bound
            .into_iter()
            .map(|(addr, name, listener)| Slot {
                running: Some(launch(&name, listener, control.clone())),
                name,
                addr,
            })
            .collect();
        let apps = Apps {
            slots,
            control: control.clone(),
        };
        let (owner, owner_gone) = oneshot::channel();
        tokio::spawn(obey(apps, commands, owner_gone));
        Ok(Farm {
            control,
            _owner: owner,
        })
    }

    /// Stops the app server `name`: when this returns its listener is closed, so new
    /// connections are refused, and its open connections are being cut. Stopping a stopped
    /// server does nothing. `NotFound` if no app has that name.
    pub async fn stop(&self, name: &str) -> io::Result<()> {
        self.control.stop(name).await
    }

    /// Starts the stopped app server `name` again on the same address. Starting a running
    /// server does nothing. `NotFound` if no app has that name; the bind error if the address
    /// has been taken meanwhile.
    pub async fn start_again(&self, name: &str) -> io::Result<()> {
        self.control.start(name).await
    }

    /// Every app server in the order given at start: name, address, running.
    pub async fn status(&self) -> Vec<(String, SocketAddr, bool)> {
        // The task lives as long as this handle (only a panic in it could end it sooner), so
        // an empty list is what a farm whose task died would truthfully show.
        self.control.status().await.unwrap_or_default()
    }
}

/// The farm's task: carries out orders until the `Farm` is dropped, then drops every app.
async fn obey(
    mut apps: Apps,
    mut commands: mpsc::Receiver<Command>,
    mut owner_gone: oneshot::Receiver<()>,
) {
    loop {
        let command = tokio::select! {
            biased;
            _ = &mut owner_gone => return,
            command = commands.recv() => command,
        };
        // `apps` holds a sender, so the channel never closes while this runs; handled anyway.
        let Some(command) = command else { return };
        // An order whose asker went away is carried out all the same; only the answer is lost.
        match command {
            Command::Status(answer) => {
                let _ = answer.send(apps.status());
            }
            Command::Stop { app, done } => {
                let _ = done.send(apps.stop(&app).await);
            }
            Command::Start { app, done } => {
                let _ = done.send(apps.start_again(&app).await);
            }
        }
    }
}

impl Apps {
    fn status(&self) -> Vec<AppStatus> {
        self.slots
            .iter()
            .map(|slot| (slot.name.clone(), slot.addr, slot.running.is_some()))
            .collect()
    }

    async fn stop(&mut self, name: &str) -> io::Result<()> {
        let slot = find(&mut self.slots, name)?;
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

    async fn start_again(&mut self, name: &str) -> io::Result<()> {
        let control = self.control.clone();
        let slot = find(&mut self.slots, name)?;
        if slot.running.is_none() {
            let listener = TcpListener::bind(slot.addr).await?;
            slot.running = Some(launch(&slot.name, listener, control));
        }
        Ok(())
    }
}

/// Spawns the app server `name` on `listener`.
fn launch(name: &str, listener: TcpListener, control: FarmControl) -> Running {
    let (stop, stopped) = watch::channel(false);
    let accept_loop = tokio::spawn(app::serve_in_farm(listener, name.into(), stopped, control));
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
