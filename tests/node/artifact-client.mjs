// GitHub's own artifact client (@actions/artifact, the library behind
// actions/upload-artifact@v4+ and actions/download-artifact@v4+), driven from the Rust tests
// (tests/it/artifacts_official.rs) against the fake results service.
//
//   node artifact-client.mjs upload NAME ROOT FILE... [--retention-days N]
//   node artifact-client.mjs list
//   node artifact-client.mjs get NAME
//   node artifact-client.mjs download ID DIR [--expected-hash sha256:HEX]
//
// The client reads ACTIONS_RUNTIME_TOKEN, ACTIONS_RESULTS_URL, GITHUB_SERVER_URL (and
// GITHUB_RETENTION_DAYS, GITHUB_WORKSPACE) from the environment, as on a runner. The answer is
// one line `RESULT <json>` on stdout (the client's own logs and ::add-mask:: lines come before
// it); a failure is `ERROR <message>` on stderr and exit status 1.

let client;
try {
  const artifact = await import('@actions/artifact');
  client = new artifact.DefaultArtifactClient();
} catch (error) {
  process.stderr.write(
    `ERROR cannot load @actions/artifact (${error.message}); run \`npm ci\` in tests/node (.ci/install-deps.sh does)\n`
  );
  process.exit(2);
}

const [command, ...rest] = process.argv.slice(2);
const flags = {};
const args = [];
for (let i = 0; i < rest.length; i++) {
  if (rest[i].startsWith('--')) {
    flags[rest[i].slice(2)] = rest[i + 1];
    i++;
  } else {
    args.push(rest[i]);
  }
}

const bigints = (_key, value) => (typeof value === 'bigint' ? value.toString() : value);

try {
  let result;
  switch (command) {
    case 'upload': {
      const [name, root, ...files] = args;
      const options = {};
      if (flags['retention-days'] !== undefined) {
        options.retentionDays = Number(flags['retention-days']);
      }
      result = await client.uploadArtifact(name, files, root, options);
      break;
    }
    case 'list':
      result = await client.listArtifacts();
      break;
    case 'get':
      result = await client.getArtifact(args[0]);
      break;
    case 'download': {
      const options = { path: args[1] };
      if (flags['expected-hash'] !== undefined) {
        options.expectedHash = flags['expected-hash'];
      }
      result = await client.downloadArtifact(Number(args[0]), options);
      break;
    }
    default:
      throw new Error(`unknown command ${JSON.stringify(command)}`);
  }
  process.stdout.write(`RESULT ${JSON.stringify(result, bigints)}\n`);
} catch (error) {
  process.stderr.write(`ERROR ${error && error.message ? error.message : String(error)}\n`);
  process.exit(1);
}
