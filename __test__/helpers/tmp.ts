import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFileSync } from 'node:child_process'

const made: string[] = []

/** Removes every folder tmpDir() made (run after each test file by helpers/setup.ts). */
export function removeTmpDirs() {
  // a process the test left running may still write in a folder: a few tries, then it is left
  for (const d of made.splice(0)) fs.rmSync(d, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 })
}

/** A fresh folder under the OS temp dir, removed after the test file. */
export function tmpDir(prefix = 'ofl-test-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  made.push(d)
  return d
}

/** Raw access to Redis through redis-cli, as the legacy TypeScript caches saw it. */
export function redisCli(port: number, ...args: string[]): string {
  return execFileSync('redis-cli', ['-p', String(port), '--no-raw', ...args], { encoding: 'utf8' }).trim()
}

export function redisCliRaw(port: number, ...args: string[]): string {
  return execFileSync('redis-cli', ['-p', String(port), '--raw', ...args], { encoding: 'utf8' }).replace(/\n$/, '')
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
