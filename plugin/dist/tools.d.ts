/** Every path a patch in the apply_patch format touches: Add/Update/Delete File and Move to. */
export declare function patchPaths(patch: string): string[];
/**
 * The files `tool` will change given `args`: null for tools that do not write files, [] for a
 * writing tool whose arguments name no file (nothing to lock).
 */
export declare function filesTouchedBy(tool: string, args: unknown): string[] | null;
