// Drives Nango's official Node SDK (@nangohq/node, pinned in package.json) against a live
// freshtoken API and prints ONE JSON object with everything it observed on stdout.
// tests/compat/test_nango_node_sdk.py seeds the server, runs this script and asserts on the output.
//
// Environment (all required):
//   FT_HOST            base URL of the freshtoken API, e.g. http://127.0.0.1:8123
//   FT_SECRET_KEY      the server's secret key
//   FT_OAUTH_PCK       integration (provider_config_key) of the OAUTH2 connections
//   FT_OAUTH_CONN      an OAUTH2 connection (tagged, with seeded metadata)
//   FT_OAUTH_CONN_2    a second OAUTH2 connection (deleted at the end)
//   FT_APIKEY_PCK      integration of the API_KEY connection
//   FT_APIKEY_CONN     an API_KEY connection
//   FT_MOCK_PCK        integration whose connections refresh at the test's mock OAuth provider
//   FT_MOCK_EXPIRED    a connection of FT_MOCK_PCK whose access token has already expired
//   FT_MOCK_FORCED     a connection of FT_MOCK_PCK whose access token is far from expiry
//
// The script must sit next to the node_modules folder holding the SDK (ES modules resolve bare
// imports from the importing file's folder): the test copies it there.
//
// Every step is recorded as {ok: true, value} or {ok: false, error: {...}}; a failing step never
// stops the others. The requests the SDK sent (method and URL, never headers) are recorded too.

import { readFileSync } from 'node:fs';
import { Nango } from '@nangohq/node';

const env = (name) => {
    const value = process.env[name];
    if (!value) {
        throw new Error(`missing environment variable ${name}`);
    }
    return value;
};

const host = env('FT_HOST');
const secretKey = env('FT_SECRET_KEY');
const oauthPck = env('FT_OAUTH_PCK');
const oauthConn = env('FT_OAUTH_CONN');
const oauthConn2 = env('FT_OAUTH_CONN_2');
const apiKeyPck = env('FT_APIKEY_PCK');
const apiKeyConn = env('FT_APIKEY_CONN');
const mockPck = env('FT_MOCK_PCK');
const mockExpired = env('FT_MOCK_EXPIRED');
const mockForced = env('FT_MOCK_FORCED');

const requests = [];
const record = (http) => (config) => {
    requests.push(`${config.method.toUpperCase()} ${http.getUri(config).replace(host, '')}`);
    return config;
};

const makeClient = (key) => {
    const holder = {};
    const nango = new Nango(
        { secretKey: key, host },
        { interceptors: { request: (config) => record(holder.http)(config) } }
    );
    holder.http = nango.http;
    return nango;
};

const nango = makeClient(secretKey);
const intruder = makeClient('ft_sk_wrong_' + 'x'.repeat(24));

function describeError(err) {
    const out = { message: String(err && err.message) };
    if (err && err.isAxiosError) {
        out.isAxiosError = true;
        out.status = err.response ? err.response.status : null;
        out.data = err.response ? err.response.data : null;
    }
    return out;
}

// An AxiosResponse (setMetadata, updateMetadata, deleteConnection return the whole response).
const axiosResponse = (response) => ({ status: response.status, data: response.data });

const results = {};
async function step(name, fn) {
    try {
        results[name] = { ok: true, value: await fn() };
    } catch (err) {
        results[name] = { ok: false, error: describeError(err) };
    }
}

// -- reads ------------------------------------------------------------------------------------
await step('getConnection', () => nango.getConnection(oauthPck, oauthConn));
await step('getConnectionWithRefreshToken', () => nango.getConnection(oauthPck, oauthConn, false, true));
await step('getToken', () => nango.getToken(oauthPck, oauthConn));
await step('getRawTokenResponse', () => nango.getRawTokenResponse(oauthPck, oauthConn));
await step('getConnectionApiKey', () => nango.getConnection(apiKeyPck, apiKeyConn));
await step('getTokenApiKey', () => nango.getToken(apiKeyPck, apiKeyConn));

// -- lists ------------------------------------------------------------------------------------
await step('listConnections', () => nango.listConnections());
await step('listConnectionsById', () => nango.listConnections({ connectionId: oauthConn }));
await step('listConnectionsLegacyById', () => nango.listConnections(oauthConn));
// The SDK lower-cases tag keys in the query (tags[team]=blue).
await step('listConnectionsByTag', () => nango.listConnections({ tags: { Team: 'blue' } }));
await step('listConnectionsByIntegration', () => nango.listConnections({ integrationId: [apiKeyPck] }));
await step('listConnectionsNoMatch', () => nango.listConnections({ connectionId: 'no-such-connection' }));

// -- integrations -----------------------------------------------------------------------------
await step('listIntegrations', () => nango.listIntegrations());
await step('getIntegration', () => nango.getIntegration({ uniqueKey: oauthPck }));

// -- metadata ---------------------------------------------------------------------------------
await step('getMetadataSeeded', () => nango.getMetadata(oauthPck, oauthConn));
await step('setMetadata', async () =>
    axiosResponse(await nango.setMetadata(oauthPck, oauthConn, { plan: 'pro', limits: { seats: 5 } }))
);
await step('getMetadataAfterSet', () => nango.getMetadata(oauthPck, oauthConn));
await step('updateMetadata', async () =>
    axiosResponse(await nango.updateMetadata(oauthPck, oauthConn, { region: 'eu', limits: { seats: 9 } }))
);
await step('getMetadataAfterUpdate', () => nango.getMetadata(oauthPck, oauthConn));
await step('setMetadataMany', async () =>
    axiosResponse(await nango.setMetadata(oauthPck, [oauthConn, oauthConn2], { bulk: true }))
);
await step('getMetadataManyFirst', () => nango.getMetadata(oauthPck, oauthConn));
await step('getMetadataManySecond', () => nango.getMetadata(oauthPck, oauthConn2));
await step('updateMetadataUnknown', async () =>
    axiosResponse(await nango.updateMetadata(oauthPck, [oauthConn, 'no-such-connection'], { x: 1 }))
);
await step('getMetadataAfterUnknown', () => nango.getMetadata(oauthPck, oauthConn));

// -- patch ------------------------------------------------------------------------------------
await step('patchConnection', () =>
    nango.patchConnection({ connectionId: oauthConn2, provider_config_key: oauthPck }, { tags: { team: 'red' } })
);
await step('listConnectionsByTagAfterPatch', () => nango.listConnections({ tags: { team: 'red' } }));

// -- delete -----------------------------------------------------------------------------------
await step('deleteConnection', async () => axiosResponse(await nango.deleteConnection(oauthPck, oauthConn2)));
await step('getConnectionAfterDelete', () => nango.getConnection(oauthPck, oauthConn2));
await step('getTokenAfterDelete', () => nango.getToken(oauthPck, oauthConn2));
await step('deleteConnectionAgain', async () => axiosResponse(await nango.deleteConnection(oauthPck, oauthConn2)));
await step('listConnectionsAfterDelete', () => nango.listConnections());

// -- refresh ----------------------------------------------------------------------------------
// Refresh on read (the stored token has expired), then force_refresh=true on a fresh one.
await step('getTokenExpired', () => nango.getToken(mockPck, mockExpired));
await step('getConnectionForced', () => nango.getConnection(mockPck, mockForced, true));
await step('getConnectionForcedAfter', () => nango.getConnection(mockPck, mockForced, false, true));

// -- errors -----------------------------------------------------------------------------------
await step('getConnectionUnknownIntegration', () => nango.getConnection('no-such-integration', oauthConn));
await step('getConnectionUnknownConnection', () => nango.getConnection(oauthPck, 'no-such-connection'));
await step('getConnectionWrongKey', () => intruder.getConnection(oauthPck, oauthConn));
await step('listConnectionsWrongKey', () => intruder.listConnections());
await step('getMetadataMissingArgument', () => nango.getMetadata(oauthPck, ''));

// The installed SDK's own package.json (not exported by the package, so read from node_modules).
const sdkPackage = JSON.parse(
    readFileSync(new URL('./node_modules/@nangohq/node/package.json', import.meta.url), 'utf8')
);

process.stdout.write(JSON.stringify({ sdkVersion: sdkPackage.version, results, requests }) + '\n');
