import type { Cache } from '../../lib/index.js';
import type { Settings } from './options.ts';
import { type Write } from './tools.ts';
type Lib = typeof import('../../lib/index.js');
/** The fields of a hook event this module reads (see Claude Code's hook documentation). */
export interface HookEvent {
    hook_event_name?: string;
    session_id?: string;
    cwd?: string;
    tool_name?: string;
    tool_input?: Record<string, unknown>;
    tool_use_id?: string;
    agent_id?: string;
    agent_type?: string;
    background_tasks?: unknown[];
}
/** What the hook process does: its exit code, and what it prints. */
export interface HookResult {
    exit: 0 | 2;
    stdout?: string;
    stderr?: string;
}
export declare const KIND = "claude-code";
/** The files a Claude Code tool call writes: null for one that writes none. */
export declare function claudeWrites(tool: string, input: Record<string, unknown>, s: Settings): Write[] | null;
export declare function claudeHooks(lib: Lib, s: Settings, openCache: () => Promise<Cache>): {
    handle: (ev: HookEvent, signal: AbortSignal) => Promise<HookResult>;
};
/**
 * One hook process's whole work: the event's JSON text in, what to exit with and print out. It
 * never hangs (bounded by FILE_LOCK_HOOK_TIMEOUT_MS, default the wait plus 10 s) and never lets a
 * write run unlocked without saying so: a PreToolUse of a write that cannot be locked or checked
 * is blocked with the reason.
 */
export declare function runClaudeHook(text: string, env?: NodeJS.ProcessEnv): Promise<HookResult>;
export {};
