// Gets an access token from an OIDC provider (tests/peers/oidc_provider.mjs or any other) with
// the client_credentials grant, for the mcpgw end-to-end tests.
//
//   node oidc_token.mjs --issuer URL --client-id ID --client-secret S [--resource URI]
//        [--scope S] [--ca CA_PEM] [--auth basic|post] [--json]
//
// Fetches ISSUER/.well-known/openid-configuration, checks its `issuer` equals --issuer, POSTs to
// its token_endpoint (client_secret_basic unless --auth post) and prints the access token alone
// (with --json: the whole token response). TLS trusts the system store plus --ca; verification
// is never disabled. On failure: a message on stderr, exit 1.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import https from 'node:https';
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    issuer: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    resource: { type: 'string' },
    scope: { type: 'string' },
    ca: { type: 'string' },
    auth: { type: 'string', default: 'basic' },
    json: { type: 'boolean', default: false },
  },
});
if (!opt.issuer || !opt['client-id'] || !opt['client-secret']) {
  console.error('usage: oidc_token.mjs --issuer URL --client-id ID --client-secret S [--resource URI] [--ca PEM]');
  process.exit(2);
}
let ca;

function request(url, { method = 'GET', headers = {}, body } = {}) {
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(u, { method, headers, ca, timeout: 10000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
    req.end(body);
  });
}

try {
  if (opt.ca) ca = [...rootCertificates, readFileSync(opt.ca, 'utf8')];
  const disc = await request(`${opt.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`);
  if (disc.status !== 200) throw new Error(`discovery: HTTP ${disc.status} ${disc.text}`);
  const meta = JSON.parse(disc.text);
  if (meta.issuer !== opt.issuer) throw new Error(`discovery issuer ${meta.issuer} != ${opt.issuer}`);

  const form = new URLSearchParams({ grant_type: 'client_credentials' });
  if (opt.resource) form.set('resource', opt.resource);
  if (opt.scope) form.set('scope', opt.scope);
  const headers = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (opt.auth === 'post') {
    form.set('client_id', opt['client-id']);
    form.set('client_secret', opt['client-secret']);
  } else {
    // RFC 6749 2.3.1: form-urlencode id and secret before base64.
    const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
    headers.authorization = `Basic ${Buffer.from(`${enc(opt['client-id'])}:${enc(opt['client-secret'])}`).toString('base64')}`;
  }
  const tok = await request(meta.token_endpoint, { method: 'POST', headers, body: form.toString() });
  if (tok.status !== 200) throw new Error(`token endpoint: HTTP ${tok.status} ${tok.text}`);
  const body = JSON.parse(tok.text);
  process.stdout.write(`${opt.json ? JSON.stringify(body) : body.access_token}\n`);
} catch (e) {
  console.error(`oidc_token: ${e.message}`);
  process.exit(1);
}
