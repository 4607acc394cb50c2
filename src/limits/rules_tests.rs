use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::load_str;
use crate::limits::{ZoneRegistry, Zones};
use crate::vars::{Vars, empty_request};

/// The limits of the config's first location, over fresh zones, with its variables.
fn limits_of(http_level: &str, location: &str) -> (Box<Limits>, Vars) {
    let text = format!(
        "http {{ {http_level} server {{ listen 127.0.0.1:1; location / {{ {location} return 200; }} }} }}"
    );
    let config = load_str(Path::new("t.conf"), &text, Path::new(".")).expect("a valid config");
    let vars = Vars::build(&config.http.maps).expect("no maps");
    let mut errors = Vec::new();
    let zones = Zones::build(&config.http, &ZoneRegistry::default(), &vars, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let rules = &config.http.servers[0].locations[0].proxy.limits;
    (zones.limits(rules).expect("limits"), vars)
}

const TWO_ZONES: &str = "limit_req_zone $binary_remote_addr zone=fast:1m rate=10r/s; \
                         limit_req_zone $binary_remote_addr zone=slow:1m rate=2r/s;";

#[test]
fn the_longest_delay_of_several_limits_wins_whichever_comes_last() {
    for order in [
        "limit_req zone=fast burst=5; limit_req zone=slow burst=5;",
        "limit_req zone=slow burst=5; limit_req zone=fast burst=5;",
    ] {
        let (limits, vars) = limits_of(TWO_ZONES, order);
        let info = empty_request();
        assert_eq!(limits.check_requests(&vars, &info), RequestVerdict::Passed);
        // One request beyond both rates: 100 ms at 10 r/s, 500 ms at 2 r/s (less what
        // drained in the microseconds between the two checks).
        match limits.check_requests(&vars, &info) {
            RequestVerdict::Delayed { delay, zone, .. } => {
                assert_eq!(&*zone, "slow", "{order}");
                assert!(delay > Duration::from_millis(400), "{order}: {delay:?}");
                assert!(delay <= Duration::from_millis(500), "{order}: {delay:?}");
            }
            other => panic!("{order}: {other:?}"),
        }
    }
}

#[test]
fn the_client_address_key_is_its_bytes() {
    let (limits, vars) = limits_of(
        "limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;",
        "limit_req zone=one;",
    );
    let v4: SocketAddr = "192.0.2.7:1000".parse().unwrap();
    let mapped: SocketAddr = "[::ffff:192.0.2.7]:2000".parse().unwrap();
    let info = RequestInfo {
        client: v4,
        ..empty_request()
    };
    assert_eq!(limits.check_requests(&vars, &info), RequestVerdict::Passed);
    // The same client on a dual-stack socket is the same key.
    let info = RequestInfo {
        client: mapped,
        ..empty_request()
    };
    assert!(matches!(
        limits.check_requests(&vars, &info),
        RequestVerdict::Rejected { .. }
    ));
    let zone = limits.requests[0].zone.clone();
    assert_eq!(zone.len(), 1);
    let mut key = Vec::new();
    limits.requests[0]
        .key
        .render(&vars, &info, &mut String::new(), &mut key);
    assert_eq!(key, [192, 0, 2, 7]);
}
