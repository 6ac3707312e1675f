import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFileSync } from 'node:child_process'

export function tmpDir(prefix = 'ofl-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

/** Raw access to Redis through redis-cli, as the legacy TypeScript caches saw it. */
export function redisCli(port: number, ...args: string[]): string {
  return execFileSync('redis-cli', ['-p', String(port), '--no-raw', ...args], { encoding: 'utf8' }).trim()
}

export function redisCliRaw(port: number, ...args: string[]): string {
  return execFileSync('redis-cli', ['-p', String(port), '--raw', ...args], { encoding: 'utf8' }).replace(/\n$/, '')
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
