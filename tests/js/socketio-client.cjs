// The real socket.io client for tests/e2e/sticky_learn.rs: connects to URL (no cookies: none
// is kept), asks "whoami" several times, and prints one JSON line:
//   {"servers":["a","a",...],"transport":"polling"|"websocket"}
// MODE "polling" stays on long polling; "upgrade" (socket.io's default) starts polling and
// upgrades to a WebSocket, and asks again once upgraded. Any failure prints on stderr, exit 1.
//
//   node socketio-client.cjs URL polling|upgrade
"use strict";

const { io } = require("socket.io-client");

const LIMIT_MS = 10000;
const ASKS = 4;

function finish(stream, line, code) {
    clearTimeout(timer);
    stream.write(`${line}\n`, () => process.exit(code));
}

async function run(url, mode) {
    const options = { reconnection: false, timeout: 5000 };
    if (mode === "polling") {
        Object.assign(options, { transports: ["polling"], upgrade: false });
    }
    const socket = io(url, options);
    await new Promise((resolve, reject) => {
        socket.on("connect", resolve);
        socket.on("connect_error", reject);
    });
    // Failures after the handshake (a poll refused by a server that does not know the sid).
    let lost = null;
    socket.on("disconnect", (reason) => { lost = reason; });
    const ask = () => socket.timeout(3000).emitWithAck("whoami");
    const servers = [];
    for (let i = 0; i < ASKS; i++) {
        servers.push(await ask());
    }
    if (mode === "upgrade") {
        if (socket.io.engine.transport.name !== "websocket") {
            await new Promise((resolve) => socket.io.engine.once("upgrade", resolve));
        }
        servers.push(await ask());
    }
    if (lost) {
        throw new Error(`disconnected: ${lost}`);
    }
    const transport = socket.io.engine.transport.name;
    socket.close();
    return { servers, transport };
}

const [url, mode = "upgrade"] = process.argv.slice(2);
const timer = setTimeout(() => finish(process.stderr, `socketio-client: no result within ${LIMIT_MS} ms`, 1), LIMIT_MS);
run(url, mode).then(
    (result) => finish(process.stdout, JSON.stringify(result), 0),
    (error) => finish(process.stderr, `socketio-client: ${error && error.stack ? error.stack : error}`, 1),
);
