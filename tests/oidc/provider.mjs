// A real OpenID Provider for the SSO tests: panva's oidc-provider (OpenID certified) on
// http://127.0.0.1:<port>, configured from a JSON file. tests/oidc_provider.py writes the file,
// starts this, waits for the "ready" line and drives the provider's own sign-in pages.
//
//   node tests/oidc/provider.mjs config.json
//
// The config: port; clients (oidc-provider client metadata: client_id, client_secret,
// redirect_uris, post_logout_redirect_uris, token_endpoint_auth_method, ...); accounts (id ->
// claims: email, email_verified, name, groups, ...); jwks ({keys: [private JWKs]}, the first
// signs); optional ttl (seconds per artifact, AuthorizationCode 60 by default), claims (scope ->
// claim names) and conform_id_token_claims (false: the scopes' claims are in the ID token too).
//
// Everything is in memory (codes, sessions, grants): a restart forgets them.

import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;

// Every scope with its claims; a scope's claims are released when the scope is granted.
const CLAIMS = {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: ['name', 'given_name', 'family_name', 'preferred_username', 'locale', 'zoneinfo',
    'updated_at'],
  groups: ['groups'],
};

// Numbers rather than the library's functions: fixed and no "you SHOULD change" notices.
const TTL = {
  AuthorizationCode: 60,
  AccessToken: 3600,
  IdToken: 3600,
  Interaction: 3600,
  Session: 86400,
  Grant: 86400,
  RefreshToken: 86400,
};

const accounts = config.accounts || {};

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: config.jwks,
  // No account for unknown ids: the library then fails with a 500 (sign_in refuses them first).
  async findAccount(ctx, id) {
    if (!Object.hasOwn(accounts, id)) return undefined;
    return {
      accountId: id,
      // The library keeps only the granted scopes' claims from this.
      async claims() { return { sub: id, ...accounts[id] }; },
    };
  },
  claims: config.claims || CLAIMS,
  // The library's default (true) puts only `sub` in an ID token from the code flow and the
  // rest in userinfo; relying parties commonly read email and groups from the ID token.
  conformIdTokenClaims: config.conform_id_token_claims ?? false,
  ttl: { ...TTL, ...config.ttl },
  pkce: { required: () => true }, // S256 is the only method the library knows
  features: {
    devInteractions: { enabled: true }, // its login form takes any password
    rpInitiatedLogout: { enabled: true },
    userinfo: { enabled: true },
  },
  // Signed cookies; a new key each start, like the in-memory sessions they name.
  cookies: { keys: [randomBytes(32).toString('hex')] },
  // One-line errors instead of the styled page (tests/oidc_provider.py reads them).
  async renderError(ctx, out) {
    ctx.type = 'text';
    ctx.body = Object.entries(out).map(([key, value]) => `${key}: ${value}`).join('\n');
  },
});

// Plain http on loopback. The library marks its cookies Secure when the request is https
// (ctx.secure, which trusts X-Forwarded-Proto when proxy is on); a Secure cookie never comes back
// over http, and the sign-in then loses its interaction. No proxy in front: keep it off.
provider.proxy = false;

// What went wrong, for the test's log (stdout is only the ready line).
for (const event of ['server_error', 'authorization.error', 'grant.error', 'end_session.error',
  'userinfo.error', 'jwks.error', 'discovery.error', 'introspection.error']) {
  provider.on(event, (ctx, error) => console.error(`${event}: ${error.message}`
    + (error.error_description ? `: ${error.error_description}` : '')
    + (error.error_detail && error.error_detail !== error.error_description
      ? ` (${error.error_detail})` : '')));
}

// The library checks static clients' metadata only when one is first used: check them all now,
// so a bad one fails the start, not a sign-in.
for (const { client_id: id } of config.clients) {
  try {
    await provider.Client.find(id);
  } catch (error) {
    console.error(`client ${id}: ${error.message}: ${error.error_description}`);
    process.exit(1);
  }
}

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider ready ${issuer}`);
});
server.on('error', (error) => {
  console.error(`cannot listen on ${issuer}: ${error.message}`);
  process.exit(1);
});
