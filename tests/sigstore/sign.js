// Signs test artifacts with sigstore-js (@sigstore/sign) against the mock Fulcio, Rekor,
// CT log and timestamp authority of @sigstore/mock, and prints one JSON document on
// stdout: the trusted root of that mock instance and the bundles the keyless tests verify.
//
// Nothing leaves the process: the mock services are nock interceptors on made-up
// https:// hosts, and every other connection is refused (nock.disableNetConnect).
//
// Run by tests/support/sigstore.rs as `node sign.js` with NODE_PATH pointing at the
// node_modules that .ci/run installs from this directory's package-lock.json.
// SIGN_IMAGES=n also signs n further images three ways each (DSSE bundle, message-signature
// bundle, legacy .sig payload) and attests their SLSA provenance, for tests and benchmarks
// that push many to a registry.
// SIGN_STATEMENTS=<file> signs attestations: the file is a JSON list of
// {name, predicateType, predicate, subject: "image"|"other", identity: "ci"|"evil"}; each
// becomes a keyless DSSE bundle (`attestations`) and a DSSE envelope signed with one EC key
// (`keyed.envelopes`, the key in `keyed.publicKeyPem`), as `cosign attest --key` writes.
'use strict';

const crypto = require('crypto');
const nock = require('nock');
const mock = require('@sigstore/mock');
const {
  DSSEBundleBuilder,
  FulcioSigner,
  MessageSignatureBundleBuilder,
  RekorWitness,
  TSAWitness,
} = require('@sigstore/sign');
const { bundleToJSON } = require('@sigstore/bundle');

nock.disableNetConnect();

const HOUR = 60 * 60 * 1000;
const ISSUER = 'https://token.actions.githubusercontent.com';
const WORKFLOW = 'acme/app/.github/workflows/release.yml@refs/tags/v1.0.0';
const SUBJECT = `https://github.com/${WORKFLOW}`;
const COSIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';

// Serves one mock handler on `base` for as many requests as the run makes.
function serve(base, handler) {
  nock(base)
    .persist()
    .post(handler.path)
    .reply(async (_uri, body) => {
      const request = typeof body === 'string' ? body : JSON.stringify(body);
      const { statusCode, response, contentType } = await handler.fn(request);
      return [statusCode, response, { 'Content-Type': contentType || 'text/plain' }];
    });
}

// An unsigned JWT carrying GitHub Actions claims; the mock Fulcio reads the claims
// without checking a signature and turns them into Fulcio certificate extensions.
function token(claims) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.c2ln`;
}

function claims(subject) {
  return {
    iss: ISSUER,
    sub: subject,
    aud: 'sigstore',
    repository: 'acme/app',
    repository_owner: 'acme',
    ref: 'refs/tags/v1.0.0',
    sha: 'a'.repeat(40),
    event_name: 'push',
    workflow: 'release',
    job_workflow_ref: WORKFLOW,
    runner_environment: 'github-hosted',
  };
}

function spki(keyPair) {
  return keyPair.publicKey.export({ format: 'der', type: 'spki' });
}

function sha256(bytes) {
  return crypto.createHash('sha256').update(bytes).digest();
}

const b64 = (bytes) => Buffer.from(bytes).toString('base64');

async function main() {
  const now = Date.now();
  const keyPair = () => crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const [caKey, ctKey, tlogKey, tsaKey] = [keyPair(), keyPair(), keyPair(), keyPair()];

  // One CA key; several issuing fronts share it, so one root certificate anchors them all.
  const ctlog = await mock.initializeCTLog(ctKey);
  const ca = await mock.initializeCA(caKey, ctlog);
  const caNoSct = await mock.initializeCA(caKey, undefined);
  const past = new Date(now - 2 * HOUR);
  const caPast = await mock.initializeCA(caKey, await mock.initializeCTLog(ctKey, past), past);
  const tlog = await mock.initializeTLog('https://rekor.test', tlogKey);
  const tsa = await mock.initializeTSA(tsaKey);
  // Whole seconds in genTime, as Sigstore's and GitHub's TSAs (Go) issue them: the mock's
  // clock has milliseconds, and sigstore-rust 0.15 reads no fractional genTime.
  tsa.getCurrentTime = () => new Date(Math.floor(Date.now() / 1000) * 1000);

  serve('https://fulcio.test', mock.fulcioHandler(ca));
  serve('https://fulcio-nosct.test', mock.fulcioHandler(caNoSct));
  serve('https://fulcio-past.test', mock.fulcioHandler(caPast));
  serve('https://rekor.test', mock.rekorHandler(tlog));
  serve('https://tsa.test', mock.tsaHandler(tsa));

  const signer = (fulcio, subject = SUBJECT) =>
    new FulcioSigner({
      fulcioBaseURL: fulcio,
      identityProvider: { getToken: async () => token(claims(subject)) },
    });
  // DSSE entries as intoto/0.0.2: the mock Rekor logs the proposed entry as the body,
  // which for intoto is the body Rekor logs, and for dsse/0.0.1 is not.
  const rekor = new RekorWitness({ rekorBaseURL: 'https://rekor.test', entryType: 'intoto' });
  const timestamp = new TSAWitness({ tsaBaseURL: 'https://tsa.test' });

  // The "image": an OCI image manifest (config: the 2-byte `{}` blob, no layers) a registry
  // accepts byte for byte, whose digest the signatures name.
  const emptyConfig = Buffer.from('{}');
  const imageManifest = () =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: `sha256:${sha256(emptyConfig).toString('hex')}`,
          size: emptyConfig.length,
        },
        layers: [],
        annotations: { 'org.example.nonce': b64(crypto.randomBytes(8)) },
      }),
    );
  const manifest = imageManifest();
  const digest = `sha256:${sha256(manifest).toString('hex')}`;
  const other = Buffer.from('another artifact');
  const otherDigest = `sha256:${sha256(other).toString('hex')}`;

  const statement = (subjectDigest, predicateType = COSIGN_PREDICATE, predicate = {}) =>
    Buffer.from(
      JSON.stringify({
        _type: 'https://in-toto.io/Statement/v1',
        subject: [{ name: 'ghcr.io/acme/app', digest: { sha256: subjectDigest.slice('sha256:'.length) } }],
        predicateType,
        predicate,
      }),
    );
  const dsse = (fulcio, witnesses, subjectDigest = digest, subject = SUBJECT, data = statement(subjectDigest)) =>
    new DSSEBundleBuilder({ signer: signer(fulcio, subject), witnesses })
      .create({ data, type: 'application/vnd.in-toto+json' })
      .then(bundleToJSON);
  const message = (fulcio, witnesses, data = manifest) =>
    new MessageSignatureBundleBuilder({ signer: signer(fulcio), witnesses })
      .create({ data })
      .then(bundleToJSON);

  // cosign's simple-signing payload for the image, signed as a message: what a legacy
  // `.sig` layer holds (payload, signature, certificate, Rekor hashedrekord entry).
  const simpleSigning = (imageDigest) =>
    Buffer.from(
      JSON.stringify({
        critical: {
          identity: { 'docker-reference': 'ghcr.io/acme/app' },
          image: { 'docker-manifest-digest': imageDigest },
          type: 'cosign container image signature',
        },
        optional: null,
      }),
    );
  const payload = simpleSigning(digest);

  const bundles = {
    dsse: await dsse('https://fulcio.test', [rekor]),
    dsseTsa: await dsse('https://fulcio.test', [rekor, timestamp]),
    message: await message('https://fulcio.test', [rekor]),
    other: await message('https://fulcio.test', [rekor], other),
    expired: await dsse('https://fulcio-past.test', [rekor]),
    noSct: await dsse('https://fulcio-nosct.test', [rekor]),
    private: await dsse('https://fulcio-nosct.test', [timestamp]),
    evilSubject: await dsse('https://fulcio.test', [rekor], digest, `https://evil.example/?${SUBJECT}`),
    legacy: await message('https://fulcio.test', [rekor], payload),
    legacyTsa: await message('https://fulcio.test', [rekor, timestamp], payload),
    // An attestation, not a signature: SLSA provenance about the image.
    slsa: await dsse(
      'https://fulcio.test',
      [rekor],
      digest,
      SUBJECT,
      statement(digest, 'https://slsa.dev/provenance/v1', {
        buildDefinition: { buildType: 'https://actions.github.io/buildtypes/workflow/v1' },
        runDetails: { builder: { id: 'https://github.com/actions/runner/github-hosted' } },
      }),
    ),
  };

  const provenance = {
    buildDefinition: {
      buildType: 'https://actions.github.io/buildtypes/workflow/v1',
      externalParameters: {
        workflow: { ref: 'refs/tags/v1.0.0', repository: 'https://github.com/acme/app', path: '.github/workflows/release.yml' },
      },
      resolvedDependencies: [{ uri: 'git+https://github.com/acme/app@refs/tags/v1.0.0', digest: { gitCommit: 'a'.repeat(40) } }],
    },
    runDetails: { builder: { id: 'https://github.com/actions/runner/github-hosted' }, metadata: {} },
  };

  // Further images, each signed three ways, with a SLSA provenance attestation.
  const images = [];
  for (let i = 0; i < Number(process.env.SIGN_IMAGES || 0); i++) {
    const m = imageManifest();
    const d = `sha256:${sha256(m).toString('hex')}`;
    const p = simpleSigning(d);
    images.push({
      manifest: b64(m),
      digest: d,
      payload: b64(p),
      bundles: {
        dsse: await dsse('https://fulcio.test', [rekor], d),
        message: await message('https://fulcio.test', [rekor], m),
        legacy: await message('https://fulcio.test', [rekor], p),
        // SLSA provenance of the image, as GitHub's attest action writes it.
        slsa: await dsse('https://fulcio.test', [rekor], d, SUBJECT, statement(d, 'https://slsa.dev/provenance/v1', provenance)),
      },
    });
  }

  // Attestations over the fixture image (or another digest), keyless and with a key.
  const attestations = {};
  const keyed = { envelopes: {} };
  if (process.env.SIGN_STATEMENTS) {
    const fs = require('fs');
    const wanted = JSON.parse(fs.readFileSync(process.env.SIGN_STATEMENTS, 'utf8'));
    const key = keyPair();
    keyed.publicKeyPem = key.publicKey.export({ format: 'pem', type: 'spki' });
    for (const w of wanted) {
      const subjectDigest = w.subject === 'other' ? otherDigest : digest;
      const data = statement(subjectDigest, w.predicateType, w.predicate);
      const who = w.identity === 'evil' ? `https://evil.example/?${SUBJECT}` : SUBJECT;
      attestations[w.name] = await dsse('https://fulcio.test', [rekor], subjectDigest, who, data);
      // DSSE with a key: the signature is over the pre-authentication encoding.
      const payloadType = 'application/vnd.in-toto+json';
      const pae = Buffer.concat([
        Buffer.from(`DSSEv1 ${payloadType.length} ${payloadType} ${data.length} `),
        data,
      ]);
      const sig = crypto.sign('sha256', pae, key.privateKey);
      keyed.envelopes[w.name] = { payloadType, payload: b64(data), signatures: [{ keyid: '', sig: b64(sig) }] };
    }
  }

  const start = new Date(now - 24 * HOUR).toISOString();
  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [
      {
        baseUrl: 'https://rekor.test',
        hashAlgorithm: 'SHA2_256',
        publicKey: {
          rawBytes: b64(spki(tlogKey)),
          keyDetails: 'PKIX_ECDSA_P256_SHA_256',
          validFor: { start },
        },
        logId: { keyId: b64(sha256(spki(tlogKey))) },
      },
    ],
    certificateAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
        uri: 'https://fulcio.test',
        certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] },
        validFor: { start },
      },
    ],
    ctlogs: [
      {
        baseUrl: 'https://ctfe.test',
        hashAlgorithm: 'SHA2_256',
        publicKey: {
          rawBytes: b64(spki(ctKey)),
          keyDetails: 'PKIX_ECDSA_P256_SHA_256',
          validFor: { start },
        },
        logId: { keyId: b64(sha256(spki(ctKey))) },
      },
    ],
    timestampAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'tsa' },
        uri: 'https://tsa.test',
        certChain: {
          certificates: [{ rawBytes: b64(tsa.intCertificate) }, { rawBytes: b64(tsa.rootCertificate) }],
        },
        validFor: { start },
      },
    ],
  };

  process.stdout.write(
    JSON.stringify({
      trustedRoot,
      subject: SUBJECT,
      issuer: ISSUER,
      digest,
      otherDigest,
      manifest: b64(manifest),
      payload: b64(payload),
      caRoot: b64(ca.rootCertificate),
      bundles,
      images,
      attestations,
      keyed,
    }),
  );
}

main().catch((e) => {
  process.stderr.write(`${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
