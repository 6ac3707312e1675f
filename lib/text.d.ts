/** `s` as one line: control characters (escape sequences' ESC among them) become spaces, runs of spaces one, cut to `max` characters (default 200). */
export declare function oneLine(s: unknown, max?: number): string
