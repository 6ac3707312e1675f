// Opens a page in a real headless Chromium and reports, through the DevTools protocol, when its text
// starts or stops containing a string. Run with `node --experimental-websocket` (Node 20's WebSocket).
// argv: url. stdin, one command a line: `wait-for <text>` / `wait-gone <text>`; each answers on stdout
// with one JSON line {ok, ms} (ms: from the command to the change, polled every 50 ms, 10 s at most).
// `shot <file>` saves a screenshot. Chromium is killed when stdin ends.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'

const url = process.argv[2]
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ofl-chromium-'))
const chrome = spawn('chromium', ['--headless', '--no-sandbox', '--disable-gpu', `--user-data-dir=${profile}`, '--remote-debugging-port=0', '--window-size=1150,900', 'about:blank'], { stdio: ['ignore', 'ignore', 'pipe'] })
const cleanup = () => {
  chrome.kill('SIGKILL')
  fs.rmSync(profile, { recursive: true, force: true })
}
process.on('exit', cleanup)

const wsUrl = await new Promise((resolve, reject) => {
  let err = ''
  chrome.stderr.on('data', (d) => {
    err += d
    const m = /DevTools listening on (ws:\/\/\S+)/.exec(err)
    if (m) resolve(m[1])
  })
  chrome.once('exit', (c) => reject(new Error(`chromium exited ${c}: ${err}`)))
})
const port = new URL(wsUrl).port
const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()
const page = targets.find((t) => t.type === 'page')
const ws = new WebSocket(page.webSocketDebuggerUrl)
await new Promise((r) => ws.addEventListener('open', r, { once: true }))
let next = 1
const pending = new Map()
ws.addEventListener('message', (m) => {
  const msg = JSON.parse(m.data)
  if (msg.id && pending.has(msg.id)) {
    pending.get(msg.id)(msg)
    pending.delete(msg.id)
  }
})
const send = (method, params = {}) =>
  new Promise((resolve) => {
    const id = next++
    pending.set(id, resolve)
    ws.send(JSON.stringify({ id, method, params }))
  })
await send('Page.enable')
await send('Page.navigate', { url })
const text = async () => (await send('Runtime.evaluate', { expression: 'document.body ? document.body.innerText : ""', returnByValue: true }))?.result?.result?.value ?? ''
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
console.log(JSON.stringify({ ready: true }))

for await (const line of readline.createInterface({ input: process.stdin })) {
  const [cmd, ...rest] = line.split(' ')
  const arg = rest.join(' ')
  if (cmd === 'shot') {
    const r = await send('Page.captureScreenshot', { format: 'png' })
    fs.writeFileSync(arg, Buffer.from(r.result.data, 'base64'))
    console.log(JSON.stringify({ ok: true }))
    continue
  }
  const want = cmd === 'wait-for'
  const t = Date.now()
  let ok = false
  while (Date.now() - t < 10_000) {
    if ((await text()).includes(arg) === want) {
      ok = true
      break
    }
    await sleep(50)
  }
  console.log(JSON.stringify({ ok, ms: Date.now() - t }))
}
ws.close()
cleanup()
process.exit(0)
