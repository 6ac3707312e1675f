import type { Cache } from '../../lib/index.js';
type Lib = typeof import('../../lib/index.js');
type ToolResult = {
    content: {
        type: 'text';
        text: string;
    }[];
    isError?: boolean;
    structuredContent?: Record<string, unknown>;
};
export declare function mcpTools(lib: Lib, cache: () => Promise<Cache>, me: () => {
    sessionId: string;
    agentId: string;
    kind: string;
}, baseDir: string): {
    list(prefix?: string): Promise<ToolResult>;
    claim(paths: string[], reason?: string, ttlMinutes?: number, waitSeconds?: number): Promise<ToolResult>;
    release(paths: string[]): Promise<ToolResult>;
    check(path: string): Promise<ToolResult>;
};
/** Runs the stdio MCP server until the client goes; its claims go with it. */
export declare function serveMcp(_argv?: string[]): Promise<void>;
export {};
