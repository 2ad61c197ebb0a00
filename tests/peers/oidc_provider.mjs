// Real OIDC provider for the mcpgw end-to-end tests (npm `oidc-provider` 9, OpenID-certified).
//
//   node oidc_provider.mjs --port P --issuer https://127.0.0.1:P --tls-cert PEM --tls-key PEM
//        --key-file JWK [--key-file JWK]... --audience AUD --clients JSON [--ttl SECONDS]
//        [--alg RS256|ES256]
//
// Serves, on 127.0.0.1:P over HTTPS: discovery (/.well-known/openid-configuration and
// /.well-known/oauth-authorization-server; `issuer` is --issuer verbatim), JWKS (/jwks, public
// keys only) and the token endpoint (/token, client_credentials). No introspection: oidc-provider
// refuses to introspect JWT access tokens (unsupported_token_type).
//
// Tokens: client_credentials (client_secret_basic or client_secret_post) gives a JWT access
// token (header typ "at+jwt", alg from the signing key: RSA -> RS256, EC P-256 -> ES256) with
// iss, sub = client_id, client_id, aud, iat, exp (= iat + --ttl, default 300), jti, plus `groups`
// and `email` of the client. No `resource` parameter: aud = AUD. `resource=URI` (RFC 8707: must be
// an absolute URI) gives aud = that URI, so a token for another resource can be minted too.
//
// Keys: each --key-file is a private JWK with a `kid`; a missing file gets a fresh key (RSA 2048,
// or P-256 with --alg ES256) and a random kid. The first one signs; all are published. Key
// rotation = restart with another key file (keep the old one second for an overlap).
// Clients file: [{"client_id", "client_secret", "groups": [...], "email": "..."}] (groups, email
// optional). Logs one stderr line per request and per token issued (client, resource, scope).
//
// Prints "ready" on stdout once listening; everything else goes to stderr. Exits on SIGTERM.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import https from 'node:https';
import { parseArgs } from 'node:util';

// oidc-provider prints notices with console.info (stdout); stdout is reserved for "ready".
console.info = console.log = (...a) => console.error(...a);

const { values: opt } = parseArgs({
  options: {
    port: { type: 'string' },
    issuer: { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'key-file': { type: 'string', multiple: true },
    audience: { type: 'string' },
    clients: { type: 'string' },
    ttl: { type: 'string', default: '300' },
    alg: { type: 'string', default: 'RS256' },
  },
});
for (const k of ['port', 'issuer', 'tls-cert', 'tls-key', 'key-file', 'audience', 'clients']) {
  if (!opt[k]) {
    console.error(`oidc_provider: --${k} is required`);
    process.exit(2);
  }
}
const ttl = Number(opt.ttl);
const { default: Provider } = await import('oidc-provider');

function loadKey(path) {
  if (existsSync(path)) return JSON.parse(readFileSync(path, 'utf8'));
  const { privateKey } = opt.alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: opt.alg, use: 'sig' };
  writeFileSync(path, `${JSON.stringify(jwk)}\n`, { mode: 0o600 });
  return jwk;
}
const keys = opt['key-file'].map(loadKey);
const algOf = (k) => k.alg ?? (k.kty === 'EC' ? 'ES256' : 'RS256');
const signAlg = algOf(keys[0]);
// oidc-provider signs with the first key matching alg + kid; pin the first file's kid.
const signKid = keys[0].kid;

const clients = JSON.parse(readFileSync(opt.clients, 'utf8'));
const byId = new Map(clients.map((c) => [c.client_id, c]));
// The resource indicator used when a request names none (must be an absolute URI).
const defaultResource = URL.canParse(opt.audience) ? opt.audience : `urn:mcpgw:audience:${opt.audience}`;

const provider = new Provider(opt.issuer, {
  clients: clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
  })),
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'], // either works for every client
  clientDefaults: { id_token_signed_response_alg: signAlg }, // else an EC-only keystore fails clients
  jwks: { keys },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => defaultResource,
      getResourceServerInfo: async (ctx, resource) => ({
        scope: '',
        audience: resource === defaultResource ? opt.audience : resource,
        accessTokenTTL: ttl,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: signAlg, kid: signKid } },
      }),
    },
  },
  ttl: { ClientCredentials: ttl },
  extraTokenClaims: async (ctx, token) => {
    const c = byId.get(token.clientId);
    return c ? { groups: c.groups ?? [], email: c.email, email_verified: true } : undefined;
  },
});
provider.on('server_error', (ctx, err) => console.error('oidc_provider: server_error', err));
provider.on('grant.error', (ctx, err) => console.error('oidc_provider: grant.error', err.message, err.error_description ?? ''));
provider.on('grant.success', (ctx) => {
  const { resource, scope } = ctx.oidc.params;
  console.error(`oidc_provider: token for ${ctx.oidc.client?.clientId} resource=${resource} scope=${scope}`);
});
provider.use(async (ctx, next) => {
  await next();
  console.error(`oidc_provider: ${ctx.method} ${ctx.path} ${ctx.status}`);
});

const server = https.createServer(
  { cert: readFileSync(opt['tls-cert']), key: readFileSync(opt['tls-key']) },
  provider.callback(),
);
server.listen(Number(opt.port), '127.0.0.1', () => {
  console.error(`oidc_provider: ${opt.issuer} on 127.0.0.1:${opt.port}, kid ${signKid} (${signAlg}), ttl ${ttl}s`);
  process.stdout.write('ready\n');
});
const stop = () => server.close(() => process.exit(0)) && server.closeAllConnections();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
