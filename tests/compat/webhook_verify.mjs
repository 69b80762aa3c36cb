// Verifies webhooks with Nango's own Node SDK (@nangohq/node, pinned in package.json).
// stdin: {"secretKey": "...", "webhooks": [{"body": "<raw body>", "headers": {...}}]}
// stdout: one JSON array: per webhook {hmac: verifyIncomingWebhookRequest, legacy: verifyWebhookSignature}
import { Nango } from '@nangohq/node';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const nango = new Nango({ secretKey: input.secretKey, host: 'http://127.0.0.1:9' });
const results = input.webhooks.map(({ body, headers }) => {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    hmac: nango.verifyIncomingWebhookRequest(body, headers),
    legacy: nango.verifyWebhookSignature(lower['x-nango-signature'], JSON.parse(body)),
  };
});
process.stdout.write(JSON.stringify(results));
