// A socket.io app server for tests/e2e/sticky_learn.rs: the real `socket.io` package on
// 127.0.0.1, an ephemeral port. Prints {"port":N} once listening. Events: "whoami" is
// acknowledged with the server's NAME. GET /counts (straight to this server, not through the
// proxy) answers what it saw: {"connections":N,"unknown_sid":N} — unknown_sid counts requests
// naming a session this server never issued ("Session ID unknown", what a farm without
// stickiness runs into).
//
//   node socketio-server.cjs NAME
"use strict";

const http = require("http");
const { Server } = require("socket.io");

const name = process.argv[2] || "server";
const counts = { connections: 0, unknown_sid: 0 };

const server = http.createServer((req, res) => {
    if (req.url === "/counts") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(counts));
    }
});
const io = new Server(server);
io.engine.on("connection_error", (err) => {
    if (err.code === 1) {
        counts.unknown_sid += 1;
    }
});
io.on("connection", (socket) => {
    counts.connections += 1;
    socket.on("whoami", (ack) => ack(name));
});
server.listen(0, "127.0.0.1", () => {
    process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
// The test closes stdin when it is done with this server (or dies).
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
