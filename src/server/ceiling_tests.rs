//! Tests of the connection ceiling: shedding, retiring, and admission at the cap.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use super::*;

const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80));

#[tokio::test]
async fn retiring_a_listener_tells_its_connections_only() {
    let ceiling = Ceiling::new(10);
    let other = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 81));
    let on_listen = ceiling.admit(LISTEN).await;
    let on_other = ceiling.admit(other).await;
    ceiling.retire(Some(LISTEN));
    tokio::time::timeout(Duration::from_secs(5), on_listen.slot.told_to_go())
        .await
        .unwrap();
    assert!(on_listen.slot.told().retired);
    assert_eq!(on_other.slot.told(), Told::default());
    ceiling.retire(None);
    assert!(on_other.slot.told().retired);
}

#[test]
fn the_default_ceiling_follows_the_open_file_limit() {
    assert_eq!(from_open_files(1024), 480);
    assert_eq!(from_open_files(20_000), 9_968);
    assert_eq!(from_open_files(1_048_576), 524_256);
    assert_eq!(from_open_files(100), MIN_CEILING);
    assert_eq!(Ceiling::new(from_open_files(u64::MAX)).limit(), MAX_CEILING);
}

#[tokio::test]
async fn the_longest_idle_connections_are_shed_first_and_busy_ones_never() {
    let ceiling = Ceiling::new(10);
    let oldest = ceiling.admit(LISTEN).await;
    let busy = ceiling.admit(LISTEN).await;
    busy.slot.busy();
    let younger = ceiling.admit(LISTEN).await;
    // Ages set, not slept for: the oldest went idle at 0 ms, the younger at 10 ms.
    oldest.slot.idle_since_ms.store(0, Ordering::Relaxed);
    younger.slot.idle_since_ms.store(10, Ordering::Relaxed);
    assert_eq!(ceiling.shed(1), 1);
    assert!(oldest.slot.is_shed());
    assert!(!younger.slot.is_shed());
    assert_eq!(
        ceiling.shed(5),
        1,
        "only the younger idle one is left to shed"
    );
    assert!(younger.slot.is_shed());
    assert!(!busy.slot.is_shed());
    // A connection that turns busy is no longer marked.
    younger.slot.busy();
    assert!(!younger.slot.is_shed());
}

/// Two accept loops (two listeners) wait at a full ceiling and two connections go at once:
/// both get in — the second going is not lost while the first waiter is still on its way
/// in — and the count comes back down when they go too.
#[tokio::test]
async fn every_accept_loop_waiting_at_the_cap_gets_the_room_made() {
    let ceiling = Ceiling::new(2);
    let first = ceiling.admit(LISTEN).await;
    let second = ceiling.admit(LISTEN).await;
    first.slot.busy();
    second.slot.busy();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let ceiling = ceiling.clone();
            tokio::spawn(async move { ceiling.admit(LISTEN).await })
        })
        .collect();
    // Both are waiting: nothing was idle to shed, so neither got in.
    while ceiling.waiting.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    drop((first, second));
    let mut admitted = Vec::new();
    for waiter in waiters {
        let admission = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("admitted within 5 s")
            .unwrap();
        admitted.push(admission);
    }
    assert_eq!(ceiling.open.load(Ordering::SeqCst), 2);
    drop(admitted);
    assert_eq!(ceiling.open.load(Ordering::SeqCst), 0);
    assert_eq!(ceiling.waiting.load(Ordering::SeqCst), 0);
}

/// An accept loop whose listener is retired while it waits at the cap drops its wait: it
/// is no longer counted waiting (or every connection that goes would wake nobody), and the
/// room it did not take is there for the next.
#[tokio::test]
async fn a_wait_at_the_cap_given_up_is_not_counted_waiting() {
    let ceiling = Ceiling::new(1);
    let only = ceiling.admit(LISTEN).await;
    only.slot.busy();
    let given_up = tokio::time::timeout(Duration::from_millis(50), ceiling.admit(LISTEN)).await;
    assert!(given_up.is_err(), "admitted past the cap");
    assert_eq!(ceiling.waiting.load(Ordering::SeqCst), 0);
    drop(only);
    let next = tokio::time::timeout(Duration::from_secs(5), ceiling.admit(LISTEN)).await;
    assert!(next.is_ok(), "the room made was not there for the next");
}

#[tokio::test]
async fn a_full_ceiling_sheds_and_admits_once_a_shed_connection_is_gone() {
    let ceiling = Ceiling::new(2);
    let idle = ceiling.admit(LISTEN).await;
    let busy = ceiling.admit(LISTEN).await;
    busy.slot.busy();
    let admitting = tokio::spawn({
        let ceiling = ceiling.clone();
        async move { ceiling.admit(LISTEN).await }
    });
    tokio::time::timeout(Duration::from_secs(5), idle.slot.told_to_go())
        .await
        .unwrap();
    assert!(idle.slot.is_shed());
    assert!(!busy.slot.is_shed());
    drop(idle);
    let newcomer = tokio::time::timeout(Duration::from_secs(5), admitting)
        .await
        .unwrap()
        .unwrap();
    assert!(!newcomer.slot.is_shed());
    assert_eq!(ceiling.lock().len(), 2);
}
