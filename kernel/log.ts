// Diagnostics go to stderr: Jupyter shows a kernel's stderr in the server log, and stdout is never used by the
// kernel, so nothing written here can corrupt a protocol channel.

export interface Log {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export function stderrLog(prefix = "[tsnb]"): Log {
  const write = (level: string, message: string) => {
    process.stderr.write(`${prefix} ${level}: ${message}\n`);
  };
  return {
    info: (m) => write("info", m),
    warn: (m) => write("warn", m),
    error: (m) => write("error", m),
  };
}

/** Collects lines in memory (tests assert on what the kernel logged). */
export function memoryLog(): Log & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    info: (m) => lines.push(`info: ${m}`),
    warn: (m) => lines.push(`warn: ${m}`),
    error: (m) => lines.push(`error: ${m}`),
  };
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
