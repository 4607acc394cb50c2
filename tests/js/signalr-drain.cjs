// Real SignalR clients through a drain, for tests/e2e/drain/signalr.rs: N clients connect over
// WebSockets with automatic reconnect, and each prints one JSON line per event, as it happens:
//   {"client":0,"event":"connected","server":"a"}
//   {"client":0,"event":"closed","error":"WebSocket closed with status code: 1012 ..."}
//   {"client":0,"event":"reconnected","server":"b","echo":"b"}
// ("server" is what WhoAmI answered; after a reconnect the client also echoes once, "echo"
// naming the server that answered it, so the new connection is proven to carry invocations). Once every client reconnected the clients
// stop and {"event":"done"} ends the output; any failure prints the error on stderr and exits 1.
//
//   node signalr-drain.cjs URL CLIENTS
"use strict";

const signalR = require("@microsoft/signalr");

// The test kills this process when it outlives its own bound; this one makes a stuck client
// say where it was.
const LIMIT_MS = 30000;

function say(line) {
    process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function client(url, index, allReconnected) {
    const connection = new signalR.HubConnectionBuilder()
        .withUrl(url, { transport: signalR.HttpTransportType.WebSockets })
        // Reconnect at once: the spread is the proxy's doing, not the client's back-off.
        .withAutomaticReconnect([0, 100, 500, 1000])
        .configureLogging(signalR.LogLevel.None)
        .build();
    connection.onreconnecting((error) => {
        say({ client: index, event: "closed", error: `${error && error.message}` });
    });
    connection.onreconnected(async () => {
        try {
            const server = await connection.invoke("WhoAmI");
            const echo = await connection.invoke("Echo", `after ${index}`);
            say({ client: index, event: "reconnected", server, echo: echo.server });
            allReconnected();
        } catch (error) {
            fail(error);
        }
    });
    connection.onclose((error) => {
        if (!stopping) {
            fail(new Error(`client ${index} gave up: ${error && error.message}`));
        }
    });
    await connection.start();
    say({ client: index, event: "connected", server: await connection.invoke("WhoAmI") });
    return connection;
}

let stopping = false;

function finish(stream, line, code) {
    clearTimeout(timer);
    stream.write(`${line}\n`, () => process.exit(code));
}

function fail(error) {
    finish(process.stderr, `signalr-drain: ${error && error.stack ? error.stack : error}`, 1);
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
    const connections = [];
    for (let i = 0; i < count; i++) {
        connections.push(await client(url, i, reconnected));
    }
    await everyone;
    stopping = true;
    await Promise.all(connections.map((connection) => connection.stop()));
}

const [url, count = "6"] = process.argv.slice(2);
const timer = setTimeout(() => fail(`no result within ${LIMIT_MS} ms`), LIMIT_MS);
run(url, Number(count)).then(() => finish(process.stdout, JSON.stringify({ event: "done" }), 0), fail);
