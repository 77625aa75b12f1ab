// verify_webhook.js — check one received alert with the npm `standardwebhooks` package, as a
// venue's receiver would: node verify_webhook.js SECRET BODY_FILE HEADERS_JSON_FILE
// Exit 0 and "verified" when `new Webhook(secret).verify(body, headers)` accepts it, exit 3 and
// "rejected: <reason>" when it throws (a tampered body, a wrong secret), 2 on misuse.
'use strict';
const fs = require('fs');
const { Webhook } = require(process.env.SD_TOOLING + '/node_modules/standardwebhooks');

if (process.argv.length !== 5) {
    console.error('usage: node verify_webhook.js SECRET BODY_FILE HEADERS_JSON_FILE');
    process.exit(2);
}
const [secret, bodyFile, headersFile] = process.argv.slice(2);
const body = fs.readFileSync(bodyFile, 'utf8');
const headers = JSON.parse(fs.readFileSync(headersFile, 'utf8'));
try {
    const payload = new Webhook(secret).verify(body, headers);
    console.log('verified ' + JSON.stringify({ type: payload.type }));
    process.exit(0);
} catch (e) {
    console.log('rejected: ' + e.message);
    process.exit(3);
}
