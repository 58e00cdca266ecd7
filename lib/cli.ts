/**
 * The command line: `keptn-distributor [options]` runs the agent until
 * SIGTERM/SIGINT. Exit codes: 0 clean shutdown, 2 bad configuration or usage
 * (one line on stderr), 1 any other fatal error. The only `process.exit`.
 */
import { readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { Command, CommanderError, Option } from 'commander';
import { startAgent } from './agent.ts';
import { ConfigError, loadConfig, secretsOf } from './config.ts';
import type { addDemoCommand } from './demo/demo.ts';
import type { addEmulatorCommands } from './emulator/commands.ts';
import { createLogger } from './log.ts';
import { flagOf, settingRows, type Setting } from './settings.ts';

export const EXIT_OK = 0;
export const EXIT_FATAL = 1;
export const EXIT_USAGE = 2;

const PACKAGE = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string; description: string };

export interface CliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdout: Writable;
  readonly stderr: Writable;
  /** Aborts on the first SIGTERM/SIGINT. */
  readonly signal: AbortSignal;
}

/** The package version, for `--version` and the registration's distributorversion. */
export const VERSION = PACKAGE.version;

/** One line of `--help` per setting: its documentation, variable name(s) and default. */
export function describeSetting(row: Setting<unknown>): string {
  const names = [row.env, ...(row.aliases ?? [])].join(', ');
  const shown = row.shownDefault ?? (row.default === '' ? '""' : row.default);
  return `${row.doc} [env ${names}; default ${shown}]`;
}

/** The subcommands' modules: loaded only when the command line may name one (see `mayNameSubcommand`). */
interface Subcommands {
  readonly addEmulatorCommands: typeof addEmulatorCommands;
  readonly addDemoCommand: typeof addDemoCommand;
}

const SUBCOMMAND_WORDS = new Set(['emulate', 'trigger', 'demo', 'help', '-h', '--help']);

/**
 * Whether the subcommand modules are needed: a subcommand's name or help is
 * on the command line, or its first argument is a bare word (so a misspelt
 * subcommand gets the same usage error as before). The
 * agent itself, run with environment variables or `--flag value` options,
 * does not load the emulator and demo code (about 8 MiB of RSS).
 */
export function mayNameSubcommand(argv: readonly string[]): boolean {
  return argv.some((arg) => SUBCOMMAND_WORDS.has(arg)) || (argv[0] !== undefined && !argv[0].startsWith('-'));
}

async function loadSubcommands(): Promise<Subcommands> {
  const [emulator, demo] = await Promise.all([import('./emulator/commands.ts'), import('./demo/demo.ts')]);
  return { addEmulatorCommands: emulator.addEmulatorCommands, addDemoCommand: demo.addDemoCommand };
}

function buildProgram(io: CliIo, setExitCode: (code: number) => void, subcommands: Subcommands | undefined): Command {
  const program = new Command('keptn-distributor')
    .description(PACKAGE.description)
    .version(VERSION, '--version', 'print the version')
    .helpOption('-h, --help', 'show this help')
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: (text, write) => write(`keptn-distributor: ${text.replace(/^error: /, '')}`),
    });
  for (const [, row] of settingRows()) {
    program.addOption(new Option(`${flagOf(row)} ${row.boolean ? '[true|false]' : '<value>'}`, describeSetting(row)));
  }
  program.action(async (flags: Record<string, string | boolean>) => {
    setExitCode(await runAgent(flags, io));
  });
  const lines = {
    signal: io.signal,
    out: (line: string) => io.stdout.write(`${line}\n`),
    err: (line: string) => io.stderr.write(`${line}\n`),
    setExitCode,
  };
  subcommands?.addEmulatorCommands(program, lines);
  subcommands?.addDemoCommand(program, { ...lines, agentLog: io.stderr });
  return program;
}

async function runAgent(flags: Record<string, string | boolean>, io: CliIo): Promise<number> {
  let config;
  try {
    config = loadConfig({ env: io.env, flags });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    io.stderr.write(`keptn-distributor: ${error.message}\n`);
    return EXIT_USAGE;
  }
  const logger = createLogger({ level: config.logLevel, secrets: secretsOf(config), stream: io.stdout });
  const agent = startAgent({ ...config, distributorVersion: config.distributorVersion || VERSION }, { signal: io.signal, logger });
  try {
    await agent.closed;
    return EXIT_OK;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    logger.error('fatal', { error: message });
    io.stderr.write(`keptn-distributor: ${message}\n`);
    return EXIT_FATAL;
  }
}

/** Runs the command line with `argv` (without node and script) and returns the exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode = EXIT_OK;
  const subcommands = mayNameSubcommand(argv) ? await loadSubcommands() : undefined;
  const program = buildProgram(io, (code) => { exitCode = code; }, subcommands);
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version end with code 0; usage errors were already printed as one line.
      return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    throw error;
  }
  return exitCode;
}

/**
 * A bug that escapes every handler ends the process with one line: the
 * error's stack, never the object itself. Node's default report prints all
 * of an error's properties, and a got error carries its request headers,
 * the token among them.
 */
export function exitOnEscapedErrors(stderr: Pick<Writable, 'write'> = process.stderr): void {
  const report = (error: unknown): void => {
    const text = error instanceof Error ? error.stack ?? error.message : String(error);
    stderr.write(`keptn-distributor: unexpected failure: ${text}\n`);
    process.exit(EXIT_FATAL);
  };
  process.on('uncaughtException', report);
  process.on('unhandledRejection', report);
}

/** The process entry point: signals in, exit code out. */
export function run(): void {
  exitOnEscapedErrors();
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals): void => {
    if (controller.signal.aborted) {
      process.stderr.write(`keptn-distributor: ${name} again, exiting at once\n`);
      process.exit(EXIT_FATAL);
    }
    controller.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  main(process.argv.slice(2), { env: process.env, stdout: process.stdout, stderr: process.stderr, signal: controller.signal })
    .then((code) => process.exit(code))
    .catch((error: unknown) => {
      process.stderr.write(`keptn-distributor: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(EXIT_FATAL);
    });
}
