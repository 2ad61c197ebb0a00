// Negative-test matrix for the gateway's JWT access-token validation (mcpgw end-to-end tests).
//
//   node bad_tokens.mjs --key-file PRIVATE_JWK --issuer URL --audience AUD [--other-key-file JWK]
//   node bad_tokens.mjs --key-file PRIVATE_JWK --issuer URL --audience AUD --good
//
// The key file is the provider's signing key (tests/peers/oidc_provider.mjs --key-file). Prints a
// JSON array [{"name": "...", "token": "..."}] of tokens that a correct validator must reject
// (issuer URL exact, audience AUD, alg allow-list RS256/ES256, typ "at+jwt" or "JWT", exp
// required, 30 s leeway, 8 KiB size limit). Each differs from a valid token in one way only.
// With --good: prints one valid token (the control case), alone on a line.
// The "other" key (unknown to the provider's JWKS) is generated in memory unless
// --other-key-file names one (created there if missing). Tokens are built by hand (node:crypto +
// base64url) so that malformed ones are possible.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    'key-file': { type: 'string' },
    'other-key-file': { type: 'string' },
    issuer: { type: 'string' },
    audience: { type: 'string' },
    good: { type: 'boolean', default: false },
  },
});
if (!opt['key-file'] || !opt.issuer || !opt.audience) {
  console.error('usage: bad_tokens.mjs --key-file JWK --issuer URL --audience AUD [--other-key-file JWK] [--good]');
  process.exit(2);
}

function newJwk() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}
function loadOther(path) {
  if (!path) return newJwk();
  if (existsSync(path)) return JSON.parse(readFileSync(path, 'utf8'));
  const jwk = newJwk();
  writeFileSync(path, `${JSON.stringify(jwk)}\n`, { mode: 0o600 });
  return jwk;
}
const jwk = JSON.parse(readFileSync(opt['key-file'], 'utf8'));
const other = loadOther(opt['other-key-file']);
const key = createPrivateKey({ key: jwk, format: 'jwk' });
const otherKey = createPrivateKey({ key: other, format: 'jwk' });
const alg = jwk.alg ?? (jwk.kty === 'EC' ? 'ES256' : 'RS256');

const b64 = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');
// Signs `header.payload` (objects are JSON-encoded, strings taken as the raw segment text).
function jws(header, payload, signer = key, a = header.alg ?? alg) {
  const h = typeof header === 'string' ? header : b64(header);
  const p = typeof payload === 'string' ? payload : b64(payload);
  const input = Buffer.from(`${h}.${p}`);
  let sig;
  if (a === 'none') sig = Buffer.alloc(0);
  else if (a.startsWith('HS')) sig = createHmac(`sha${a.slice(2)}`, signer).update(input).digest();
  else {
    const opts = { key: signer };
    if (a.startsWith('ES')) opts.dsaEncoding = 'ieee-p1363';
    if (a.startsWith('PS')) Object.assign(opts, { padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: 32 });
    sig = sign(`sha${a.slice(2)}`, input, opts);
  }
  return `${h}.${p}.${sig.toString('base64url')}`;
}

const now = Math.floor(Date.now() / 1000);
const hdr = { alg, typ: 'at+jwt', kid: jwk.kid };
const claims = {
  iss: opt.issuer, sub: 'bad-tokens-client', client_id: 'bad-tokens-client', aud: opt.audience,
  iat: now, exp: now + 300, jti: randomUUID(), groups: ['eng'], email: 'bad@example.com',
};
const good = jws(hdr, claims);
if (opt.good) {
  process.stdout.write(`${good}\n`);
  process.exit(0);
}

const without = (o, k) => Object.fromEntries(Object.entries(o).filter(([x]) => x !== k));
const [gh, gp, gs] = good.split('.');
const pubPem = createPublicKey(key).export({ format: 'pem', type: 'spki' });
const sigBytes = Buffer.from(gs, 'base64url');
sigBytes[sigBytes.length >> 1] ^= 0x01;

const bad = {
  expired: jws(hdr, { ...claims, iat: now - 900, exp: now - 600 }),
  expired_beyond_leeway: jws(hdr, { ...claims, iat: now - 400, exp: now - 90 }),
  not_yet_valid: jws(hdr, { ...claims, nbf: now + 600 }),
  wrong_issuer: jws(hdr, { ...claims, iss: 'https://evil.example' }),
  issuer_trailing_slash: jws(hdr, { ...claims, iss: `${opt.issuer}/` }),
  wrong_audience: jws(hdr, { ...claims, aud: 'some-other-api' }),
  wrong_audience_array: jws(hdr, { ...claims, aud: ['some-other-api', 'another-api'] }),
  no_audience: jws(hdr, without(claims, 'aud')),
  missing_exp: jws(hdr, without(claims, 'exp')),
  exp_as_string: jws(hdr, { ...claims, exp: String(now + 300) }),
  alg_none: jws({ ...hdr, alg: 'none' }, claims, null, 'none'),
  alg_none_mixed_case: jws({ ...hdr, alg: 'nOnE' }, claims, null, 'none'),
  hs256_public_key_pem: jws({ ...hdr, alg: 'HS256' }, claims, pubPem),
  hs256_jwk_n: jws({ ...hdr, alg: 'HS256' }, claims, jwk.n ?? jwk.x),
  hs256_kid_injection_empty_secret: jws({ ...hdr, alg: 'HS256', kid: '../../../../../../dev/null' }, claims, ''),
  ps256_same_key_not_allowed: jwk.kty === 'RSA' ? jws({ ...hdr, alg: 'PS256' }, claims) : undefined,
  unknown_kid: jws({ ...hdr, alg: 'RS256', kid: other.kid }, claims, otherKey),
  no_kid_other_key: jws(without({ ...hdr, alg: 'RS256' }, 'kid'), claims, otherKey),
  right_kid_wrong_key: jws({ ...hdr, alg: 'RS256' }, claims, otherKey),
  jku_elsewhere: jws({ ...hdr, alg: 'RS256', kid: other.kid, jku: 'https://127.0.0.1:1/jwks.json' }, claims, otherKey),
  x5u_elsewhere: jws({ ...hdr, alg: 'RS256', kid: other.kid, x5u: 'https://127.0.0.1:1/cert.pem' }, claims, otherKey),
  embedded_jwk: jws(
    { alg: 'RS256', typ: 'at+jwt', kid: other.kid, jwk: { kty: 'RSA', n: other.n, e: other.e, kid: other.kid } },
    claims, otherKey),
  crit_unknown_extension: jws({ ...hdr, crit: ['urn:example:must-understand'], 'urn:example:must-understand': true }, claims),
  wrong_typ: jws({ ...hdr, typ: 'id_token+jwt' }, claims),
  tampered_payload: `${gh}.${b64({ ...claims, sub: 'admin', groups: ['admin'] })}.${gs}`,
  tampered_signature: `${gh}.${gp}.${sigBytes.toString('base64url')}`,
  truncated_signature: `${gh}.${gp}.${gs.slice(0, gs.length >> 1)}`,
  signature_stripped: `${gh}.${gp}.`,
  two_segments: `${gh}.${gp}`,
  // Signed over the text as sent, so only strict base64url decoding can catch it.
  non_base64_characters: jws(hdr, `${gp.slice(0, 10)}!*$${gp.slice(10)}`),
  payload_not_json: jws(hdr, b64('this is not json')),
  header_not_json: jws(b64('{"alg":"RS256","typ":"at+jwt",'), claims),
  huge_header: jws({ ...hdr, pad: 'x'.repeat(9000) }, claims),
  nested_jwt: jws({ ...hdr, cty: 'JWT' }, b64(good)),
  empty_string: '',
};
const out = Object.entries(bad).filter(([, t]) => t !== undefined).map(([name, token]) => ({ name, token }));
process.stdout.write(`${JSON.stringify(out)}\n`);
