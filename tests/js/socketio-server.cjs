// A socket.io app server (the real `socket.io` package) for tests/e2e/drain/socketio.rs:
// listens on a loopback port, prints {"port":N} once listening, and answers the event
// "whoami" with its NAME (through the acknowledgement). It runs until its stdin closes (the
// test holds it, and kills it when dropped).
//
//   node socketio-server.cjs NAME
"use strict";

const http = require("http");
const { Server } = require("socket.io");

const name = process.argv[2] || "server";
const httpServer = http.createServer();
const io = new Server(httpServer);
io.on("connection", (socket) => {
    socket.on("whoami", (ack) => ack(name));
});
httpServer.listen(0, "127.0.0.1", () => {
    process.stdout.write(`${JSON.stringify({ port: httpServer.address().port })}\n`);
});
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
