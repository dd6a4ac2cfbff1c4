// Runs scenario.json with Losant's official JS client (losant-rest from npm), unmodified but for the base URL.
// Usage: node run_scenario.js '<context JSON>'  -> prints {stepName: {ok: result} | {error: [status, type]}}
'use strict';
const fs = require('fs');
const path = require('path');
const api = require('losant-rest');

const ctx = JSON.parse(process.argv[2]);
const scenario = JSON.parse(fs.readFileSync(path.join(__dirname, 'scenario.json'), 'utf8'));
const results = {};

function camel(name) {
  return name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
}

function lookup(ref) {
  const [head, ...rest] = ref.slice(1).split('.');
  let value = head === 'ctx' ? ctx : (results[head] || {}).ok;
  for (const part of rest) { value = value == null ? undefined : value[part]; }
  return value;
}

function resolve(node) {
  if (typeof node === 'string' && node.startsWith('$')) { return lookup(node); }
  if (Array.isArray(node)) { return node.map(resolve); }
  if (node && typeof node === 'object') {
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, resolve(v)]));
  }
  return node;
}

async function main() {
  for (const step of scenario.steps) {
    const token = step.as === 'none' ? undefined
      : step.as === 'device' ? (results.auth || {}).ok.token
      : step.as === 'bad' ? 'not-a-token' : ctx.apiToken;
    const client = api.createClient({ url: ctx.url, accessToken: token });
    const [resource, action] = step.call.split('.').map(camel);
    try {
      results[step.name] = { ok: await client[resource][action](resolve(step.params)) };
    } catch (err) {
      if (err.statusCode === undefined) { throw err; }
      results[step.name] = { error: [err.statusCode, err.type || null] };
    }
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((err) => { process.stderr.write(String(err && err.stack || err)); process.exit(1); });
