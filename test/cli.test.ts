import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { EXIT_OK, EXIT_USAGE, VERSION, main, mayNameSubcommand } from '../lib/cli.ts';
import { settingRows, flagOf } from '../lib/settings.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(argv: string[], env: Record<string, string> = {}): Promise<Run> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk: Buffer) => { out += chunk.toString(); });
  stderr.on('data', (chunk: Buffer) => { err += chunk.toString(); });
  const code = await main(argv, { env, stdout, stderr, signal: AbortSignal.abort() });
  return { code, stdout: out, stderr: err };
}

describe('cli', () => {
  it('--help lists every setting with its flag, variable name and default', async () => {
    const { code, stdout } = await cli(['--help']);
    expect(code).to.equal(EXIT_OK);
    const help = stdout.replace(/\s+/g, ' ');
    for (const [, row] of settingRows()) {
      expect(help, row.env).to.include(flagOf(row));
      expect(help, row.env).to.include(`env ${row.env}`);
      expect(help, row.env).to.include(`default ${row.shownDefault ?? (row.default === '' ? '""' : row.default)}`);
    }
  });

  it('--version prints the package version', async () => {
    const { code, stdout } = await cli(['--version']);
    expect(code).to.equal(EXIT_OK);
    expect(stdout.trim()).to.equal(VERSION);
  });

  const usageErrors: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['an unknown flag', ['--no-such-flag'], {}, /unknown option '--no-such-flag'/],
    ['a flag without its value', ['--keptn-api-endpoint'], {}, /argument missing/],
    ['a bad variable', [], { KEPTN_API_ENDPOINT: 'not a url', PUBSUB_TOPIC: 'sh.keptn.event.a.triggered' },
      /^keptn-distributor: KEPTN_API_ENDPOINT="not a url": expected an absolute http\(s\) URL/],
    ['a bad flag value', ['--http-polling-interval', 'ten'], { KEPTN_API_ENDPOINT: 'http://127.0.0.1:1/api', PUBSUB_TOPIC: 'sh.keptn.event.a.triggered' },
      /^keptn-distributor: --http-polling-interval="ten": expected/],
    ['HTTP mode for a 0.8 control plane without PUBSUB_TOPIC', [], { KEPTN_API_ENDPOINT: 'http://127.0.0.1:1/api', KEPTN_API_VERSION: '0.8' },
      /^keptn-distributor: PUBSUB_TOPIC="": expected/],
    ['a stray argument', ['extra'], {}, /too many arguments|unknown command/],
  ];
  for (const [name, argv, env, message] of usageErrors) {
    it(`${name} → exit 2 with one line on stderr`, async () => {
      const { code, stderr, stdout } = await cli(argv, env);
      expect(code).to.equal(EXIT_USAGE);
      expect(stderr).to.match(message);
      expect(stderr.trim().split('\n')).to.have.length(1);
      expect(stdout).to.equal('');
    });
  }

  it('a flag overrides its variable (the bad variable is never read)', async () => {
    const { stderr } = await cli(['--http-polling-interval', 'nope'], {
      HTTP_POLLING_INTERVAL: 'also bad', KEPTN_API_ENDPOINT: 'http://127.0.0.1:1/api', PUBSUB_TOPIC: 'sh.keptn.event.a.triggered',
    });
    expect(stderr).to.include('--http-polling-interval="nope"');
  });
});

describe('mayNameSubcommand', () => {
  const cases: [string[], boolean][] = [
    [[], false],
    [['--keptn-api-endpoint', 'https://keptn.example'], false],
    [['--pubsub-topic', 'sh.keptn.event.test.triggered', '--log-level', 'debug'], false],
    [['emulate', '--port', '0'], true],
    [['demo'], true],
    [['--help'], true],
    [['help', 'trigger'], true],
    [['emulte'], true],
  ];
  for (const [argv, expected] of cases) {
    it(`${expected ? 'loads' : 'does not load'} the subcommands for ${JSON.stringify(argv)}`, () => {
      expect(mayNameSubcommand(argv)).to.equal(expected);
    });
  }
});
