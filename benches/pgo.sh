#!/usr/bin/env bash
# Builds tether with profile-guided optimisation: an instrumented build serves the demo farm
# under load (keep-alive GETs through the sticky upstream, new connections, SSE streams),
# LLVM's counts of that run are merged, and the release build is made again with them, its
# hot blocks laid out together. The binary lands in target/pgo/use/release/tether; measure it
# with `cargo bench --bench load -- --tether target/pgo/use/release/tether`.
#
# Why: per keep-alive request tether runs fewer instructions than nginx but misses the
# instruction cache more often (its request path is spread over large async state machines);
# the README's "Benchmarks" section has the numbers before and after.
#
# Needs wrk and curl (apt-get install -y wrk curl) and rustup's llvm-tools component (added
# here when missing). About 15 minutes on 2 cores: two release builds and ~20 s of load.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in wrk curl; do
    command -v "$tool" >/dev/null || {
        echo "pgo: needs $tool (apt-get install -y wrk curl)" >&2
        exit 1
    }
done
sysroot=$(rustc --print sysroot)
profdata=$(find "$sysroot" -name llvm-profdata -type f | head -n 1)
if [ -z "$profdata" ]; then
    rustup component add llvm-tools
    profdata=$(find "$sysroot" -name llvm-profdata -type f | head -n 1)
fi

root=$PWD/target/pgo
profiles=$root/profiles
rm -rf "$profiles"
mkdir -p "$profiles"

echo "== pgo: instrumented build"
# Only tether's own binary is trained: build scripts and proc macros write their counts
# elsewhere (LLVM_PROFILE_FILE is set for the training run alone).
CARGO_TARGET_DIR=$root/generate RUSTFLAGS="-Cprofile-generate=$root/unused" \
    cargo build --release --locked --bin tether

echo "== pgo: training on the demo farm"
listen=127.0.0.1:18099
LLVM_PROFILE_FILE="$profiles/tether-%p.profraw" \
    "$root/generate/release/tether" demo --listen "$listen" >"$root/demo.log" 2>&1 &
demo=$!
trap 'kill "$demo" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -fs -o /dev/null "http://$listen/whoami" && break
    sleep 0.1
done
curl -fs -o /dev/null "http://$listen/whoami"
# SSE streams held open beside the requests, so their path is trained too.
for _ in $(seq 20); do
    curl -s -N --max-time 12 -o /dev/null "http://$listen/sse" &
done
wrk -t1 -c64 -d6s "http://$listen/whoami" | grep -E "Requests/sec"
wrk -t1 -c64 -d3s -H "Connection: close" "http://$listen/whoami" | grep -E "Requests/sec"
wrk -t1 -c64 -d3s -H "Cookie: tether_demo=x" "http://$listen/whoami" | grep -E "Requests/sec"
# The streams end by their --max-time; the demo goes on until told.
wait $(jobs -p | grep -v "^$demo$") 2>/dev/null || true
kill -TERM "$demo"
wait "$demo" || true
trap - EXIT
ls "$profiles"/*.profraw >/dev/null

echo "== pgo: merging the counts"
"$profdata" merge -o "$root/tether.profdata" "$profiles"

echo "== pgo: optimised build"
CARGO_TARGET_DIR=$root/use RUSTFLAGS="-Cprofile-use=$root/tether.profdata" \
    cargo build --release --locked --bin tether
echo "pgo: built $root/use/release/tether"
