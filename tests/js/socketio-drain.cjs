// Real socket.io clients (`socket.io-client`) through a drain, for tests/e2e/drain/socketio.rs:
// N clients connect over WebSockets with the client's own reconnection, and each prints one
// JSON line per event, as it happens:
//   {"client":0,"event":"connected","server":"a"}
//   {"client":0,"event":"closed","reason":"transport close"}
//   {"client":0,"event":"reconnected","server":"b"}
// ("server" is what the app's "whoami" acknowledged). Once every client reconnected they
// disconnect and {"event":"done"} ends the output; a failure prints on stderr and exits 1.
//
//   node socketio-drain.cjs URL CLIENTS
"use strict";

const { io } = require("socket.io-client");

const LIMIT_MS = 30000;

function say(line) {
    process.stdout.write(`${JSON.stringify(line)}\n`);
}

function finish(stream, line, code) {
    clearTimeout(timer);
    stream.write(`${line}\n`, () => process.exit(code));
}

function fail(error) {
    finish(process.stderr, `socketio-drain: ${error && error.stack ? error.stack : error}`, 1);
}

function client(url, index, reconnected) {
    return new Promise((connected) => {
        // Reconnect at once: the spread is the proxy's doing, not the client's back-off.
        const socket = io(url, {
            transports: ["websocket"],
            reconnectionDelay: 50,
            reconnectionDelayMax: 200,
            randomizationFactor: 0,
        });
        let first = true;
        socket.on("connect", async () => {
            try {
                const server = await socket.timeout(5000).emitWithAck("whoami");
                if (first) {
                    first = false;
                    say({ client: index, event: "connected", server });
                    connected(socket);
                } else {
                    say({ client: index, event: "reconnected", server });
                    reconnected();
                }
            } catch (error) {
                fail(error);
            }
        });
        socket.on("disconnect", (reason) => {
            if (reason !== "io client disconnect") {
                say({ client: index, event: "closed", reason });
            }
        });
        socket.on("connect_error", (error) => fail(error));
    });
}

async function run(url, count) {
    let left = count;
    let done;
    const everyone = new Promise((resolve) => (done = resolve));
    const reconnected = () => {
        left -= 1;
        if (left === 0) {
            done();
        }
    };
    const sockets = [];
    for (let i = 0; i < count; i++) {
        sockets.push(await client(url, i, reconnected));
    }
    await everyone;
    sockets.forEach((socket) => socket.disconnect());
}

const [url, count = "6"] = process.argv.slice(2);
const timer = setTimeout(() => fail(`no result within ${LIMIT_MS} ms`), LIMIT_MS);
run(url, Number(count)).then(() => finish(process.stdout, JSON.stringify({ event: "done" }), 0), fail);
