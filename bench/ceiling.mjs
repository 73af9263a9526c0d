#!/usr/bin/env node
// `node bench/ceiling.mjs`: the websocket ceiling under the browser benchmarks, and why they do not drive Chromium
// with playwright (bench/cdp-browser.mjs explains). Not a test.

import { createServer } from "node:http";
import { chromium } from "playwright-core";
import { WebSocket, WebSocketServer } from "ws";
import { launchCdpBrowser } from "./cdp-browser.mjs";
import { loadHelpers } from "./lib.mjs";

/**
 * The ceiling every browser figure lives under: 100 MB received over a plain websocket from a local Node
 * server, under playwright (Network domain on) and under bench/cdp-browser.mjs's driver.
 */
async function measureCeiling() {
  const helpers = await loadHelpers(".build-ceiling");
  const { CHROMIUM, CHROMIUM_ARGS } = helpers.browser;
  const http = createServer((_req, res) => res.end("<html><body>websocket ceiling</body></html>"));
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
  const message = Buffer.alloc(10e6, 7);
  wss.on("connection", (ws) => ws.on("message", () => { for (let i = 0; i < 10; i++) ws.send(message); }));
  await new Promise((resolve) => http.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${http.address().port}/`;
  const receive100MB = (wsUrl) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl);
      ws.binaryType = "arraybuffer";
      ws.onerror = () => reject(new Error("websocket error"));
      ws.onopen = () => {
        const t0 = performance.now();
        let bytes = 0;
        ws.onmessage = (e) => {
          bytes += e.data.byteLength;
          if (bytes >= 100e6) {
            ws.close();
            resolve(performance.now() - t0);
          }
        };
        ws.send("go");
      };
    });
  const wsUrl = url.replace("http", "ws");
  const runs = 3;
  try {
    const pw = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    try {
      const page = await pw.newPage();
      await page.goto(url);
      for (let i = 0; i < runs; i++) console.log(`playwright (Network domain on): ${(await page.evaluate(receive100MB, wsUrl)).toFixed(0)} ms per 100 MB`);
    } finally {
      await pw.close();
    }
    const cdp = await launchCdpBrowser({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const page = await cdp.newPage();
      await page.goto(url);
      for (let i = 0; i < runs; i++) console.log(`DevTools Runtime only (bench/cdp-browser.mjs): ${(await page.evaluate(receive100MB, wsUrl)).toFixed(0)} ms per 100 MB`);
    } finally {
      await cdp.dispose();
    }
  } finally {
    helpers.dispose();
    wss.close();
    http.close();
  }
}

await measureCeiling();
