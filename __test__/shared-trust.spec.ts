// The shared store trusts nothing it did not make (each case failed before its fix): a lock file
// that is a symlink to someone's file, a socket planted in the folder that leads to another
// user's server, a folder on the way that others may change or a symlink another user made, and
// no home folder (no shared temporary folder instead). Run as root, the tests play "another user"
// with uid 65534 (nobody).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { SledCache } from '../lib/index.js'
import { tmpDir } from './helpers/tmp'

const ROOT = path.resolve(__dirname, '..')
const root = process.getuid!() === 0
const children: ChildProcess[] = []
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
})

describe('the local store trusts nothing it did not make', () => {
  it('a lock file that is a symlink to another file: refused, and that file is left as it was', async () => {
    const folder = tmpDir('ofl-trust-')
    const victim = path.join(tmpDir('ofl-victim-'), 'precious.txt')
    fs.writeFileSync(victim, 'do not truncate me')
    fs.symlinkSync(victim, path.join(folder, 'ofl.lock'))
    const e = await SledCache.open({ path: folder }).catch((x) => x)
    expect(e.code).toBe('EBACKEND')
    expect(e.message).toContain(`${path.join(fs.realpathSync(folder), 'ofl.lock')} is not a file of this user (it is a symlink`)
    expect(fs.readFileSync(victim, 'utf8')).toBe('do not truncate me')
  })

  it.runIf(root)('a socket planted in the folder that leads to another user’s server: nothing is sent to it', async () => {
    // another user's server, in a folder of its own, answering with our hello
    const theirs = tmpDir('ofl-theirs-')
    fs.chownSync(theirs, 65534, 65534)
    const sock = path.join(theirs, 'evil.sock')
    const script = `const net = require('net'); const fs = require('fs'); let got = 0
      const hello = Buffer.from(JSON.stringify({ hello: 'opencode-file-lock', protocol: 3, version: '0.1.0', pid: process.pid })); const len = Buffer.alloc(4); len.writeUInt32LE(hello.length)
      net.createServer((c) => { c.on('data', (d) => { got += d.length; fs.writeFileSync(${JSON.stringify(path.join(theirs, 'got'))}, String(got)) }); c.write(Buffer.concat([len, hello])) }).listen(${JSON.stringify(sock)}, () => console.log('LISTENING'))`
    const evil = spawn(process.execPath, ['-e', script], { uid: 65534, gid: 65534, cwd: '/', stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(evil)
    await new Promise<void>((r) => evil.stdout!.on('data', (d) => String(d).includes('LISTENING') && r()))
    // our folder, its serve lock held by a process of ours, and the planted socket in it
    const folder = tmpDir('ofl-trust-')
    const holder = spawn('flock', [path.join(folder, 'ofl.lock'), 'sleep', '60'], { stdio: 'ignore' })
    children.push(holder)
    // until flock holds it (the file exists a moment before it is locked: test with a try of our own)
    for (let i = 0; i < 250 && spawnSync('flock', ['-n', path.join(folder, 'ofl.lock'), 'true']).status === 0; i++) await new Promise((r) => setTimeout(r, 20))
    fs.symlinkSync(sock, path.join(folder, 'ofl.sock'))
    const e = await SledCache.open({ path: folder }).catch((x) => x)
    expect(e.code).toBe('EBACKEND')
    expect(e.message).toMatch(/ofl\.sock is not a socket of this user \(it is a symlink/)
    expect(fs.existsSync(path.join(theirs, 'got'))).toBe(false) // not a byte reached it
  })

  it.runIf(root)('a folder on the way that others may change, or a symlink on the way another user made: refused', async () => {
    const open = tmpDir('ofl-open-')
    fs.chmodSync(open, 0o777) // writable by all, not sticky
    const e = await SledCache.open({ path: path.join(open, 'locks') }).catch((x) => x)
    expect(e.code).toBe('EBACKEND')
    expect(e.message).toMatch(/may be changed by other users \(mode 777\) and is not sticky/)
    const sticky = tmpDir('ofl-sticky-')
    fs.chmodSync(sticky, 0o1777)
    const target = tmpDir('ofl-target-')
    fs.symlinkSync(target, path.join(sticky, 'planted'))
    spawnSync('chown', ['-h', '65534:65534', path.join(sticky, 'planted')])
    const e2 = await SledCache.open({ path: path.join(sticky, 'planted', 'locks') }).catch((x) => x)
    expect(e2.code).toBe('EBACKEND')
    expect(e2.message).toContain('is a symlink made by another user (uid 65534)')
    // a folder of ours that others could write into: its contents cannot be trusted
    const mine = path.join(tmpDir('ofl-mine-'), 'locks')
    fs.mkdirSync(mine, { mode: 0o777 })
    fs.chmodSync(mine, 0o777)
    const e3 = await SledCache.open({ path: mine }).catch((x) => x)
    expect(e3.message).toContain('could be written by other users (mode 777)')
  })

  it('with no HOME and no XDG_STATE_HOME, the default store asks for FILE_LOCK_PATH instead of using a shared temporary folder', () => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !['HOME', 'XDG_STATE_HOME', 'FILE_LOCK_PATH', 'USERPROFILE'].includes(k)))
    const r = spawnSync(process.execPath, ['-e', "require('./lib/index.js').openCache().then(() => console.log('opened'), (e) => console.log(e.code, e.message))"], { cwd: ROOT, env, encoding: 'utf8' })
    expect(r.stdout).toMatch(/^EINVAL .*neither is set: set FILE_LOCK_PATH to a folder of your own \(a shared temporary folder is never used/)
    expect(fs.existsSync(path.join(require('node:os').tmpdir(), 'opencode-file-lock', 'locks', 'ofl.sock'))).toBe(false)
  })
})
