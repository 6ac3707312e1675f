// The plugin's settings: its options (from opencode's config, or a test) and the environment.
// A bad value is an error naming the option or variable; the plugin then refuses writes with it
// rather than letting opencode skip the plugin and write unlocked.
import os from 'node:os';
import { parseToolRules } from './tools.js';
const OPTION_KEYS = ['agentId', 'cacheBackend', 'cache', 'redisCache', 'ttlMs', 'baseDir', 'scope', 'waitMs', 'toast', 'tools', 'stale'];
const STALE_MODES = ['refuse', 'warn', 'off'];
const DAY_MS = 86_400_000;
const MAX_WAIT_MS = 86_400_000; // the library's bound: a day
const MAX_TTL_MS = 2_147_483_647; // the library's bound: the longest a timer waits
const fail = (what, rule, got) => new Error(`opencode-file-lock: ${what} must be ${rule}, got ${JSON.stringify(got)}`);
/** A true/false environment variable, or undefined when unset. */
function flag(env, name) {
    const v = env[name]?.trim().toLowerCase();
    if (v === undefined || v === '')
        return undefined;
    if (['1', 'true', 'yes', 'on'].includes(v))
        return true;
    if (['0', 'false', 'no', 'off'].includes(v))
        return false;
    throw fail(name, 'true or false', env[name]);
}
/** Whole milliseconds from `min` to `max`: the option if given, else the variable, else `fallback`. */
function millis(option, optionName, env, name, min, max, fallback) {
    const rule = `a whole number of milliseconds from ${min} to ${max}`;
    if (option !== undefined) {
        if (typeof option !== 'number' || !Number.isInteger(option) || option < min || option > max)
            throw fail(`option ${optionName}`, rule, option);
        return option;
    }
    const v = env[name]?.trim();
    if (v === undefined || v === '')
        return fallback;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
        throw fail(name, rule, env[name]);
    return Number(v);
}
/**
 * The settings opencode's input (`directory`, ...) and config options ask for; a test may pass
 * the options in the input itself.
 */
export function settings(input, options, env) {
    const opts = { ...(options ?? {}) };
    for (const k of OPTION_KEYS)
        if (input?.[k] !== undefined)
            opts[k] = input[k];
    for (const k of Object.keys(options ?? {})) {
        if (!OPTION_KEYS.includes(k))
            throw new Error(`opencode-file-lock: unknown option ${JSON.stringify(k)} (it knows ${OPTION_KEYS.filter((o) => o !== 'redisCache').join(', ')})`);
    }
    const scope = opts.scope ?? (env.FILE_LOCK_SCOPE?.trim() || 'call');
    if (scope !== 'call' && scope !== 'turn')
        throw fail(opts.scope !== undefined ? 'option scope' : 'FILE_LOCK_SCOPE', "'call' or 'turn'", scope);
    const backend = opts.cacheBackend;
    if (backend !== undefined && !['sled', 'redis', 'hybrid'].includes(backend))
        throw fail('option cacheBackend', "'sled', 'redis' or 'hybrid'", backend);
    if (opts.toast !== undefined && typeof opts.toast !== 'boolean')
        throw fail('option toast', 'true or false', opts.toast);
    if (opts.tools !== undefined && typeof opts.tools !== 'string')
        throw fail('option tools', 'a string in FILE_LOCK_TOOLS syntax', opts.tools);
    const stale = opts.stale ?? (env.FILE_LOCK_STALE?.trim().toLowerCase() || 'refuse');
    if (!STALE_MODES.includes(stale))
        throw fail(opts.stale !== undefined ? 'option stale' : 'FILE_LOCK_STALE', "'refuse', 'warn' or 'off'", opts.stale ?? env.FILE_LOCK_STALE);
    const fromEnv = parseToolRules(env.FILE_LOCK_TOOLS);
    const fromOption = parseToolRules(opts.tools, 'option tools');
    return {
        agentId: opts.agentId ?? env.FILE_LOCK_AGENT_ID ?? `opencode@${os.hostname()}:${process.pid}`,
        cacheBackend: backend,
        cache: (opts.cache ?? opts.redisCache),
        ttlMs: millis(opts.ttlMs, 'ttlMs', env, 'FILE_LOCK_TTL_MS', 1, MAX_TTL_MS, undefined),
        baseDir: opts.baseDir ?? input?.directory ?? input?.worktree ?? process.cwd(),
        scope,
        waitMs: millis(opts.waitMs, 'waitMs', env, 'FILE_LOCK_WAIT_MS', 0, MAX_WAIT_MS, 5000),
        // ENABLE_LOCK_RENEWAL=false: a lock lives its TTL and no longer, however long the tool runs
        renewal: flag(env, 'ENABLE_LOCK_RENEWAL') ?? true,
        debug: flag(env, 'DEBUG_FILE_LOCK_CACHE') ?? flag(env, 'DEBUG_MODE') ?? false,
        toast: opts.toast ?? flag(env, 'FILE_LOCK_TOAST') ?? true,
        tools: { writes: new Map([...fromEnv.writes, ...fromOption.writes]), ignores: new Set([...fromEnv.ignores, ...fromOption.ignores]) },
        stale: stale,
        versionTtlMs: millis(undefined, 'versionTtlMs', env, 'FILE_LOCK_VERSION_TTL_MS', 1000, 30 * DAY_MS, DAY_MS),
    };
}
