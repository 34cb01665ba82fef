//! Replays the fuzz seeds (and the findings kept beside them) through the same entry points
//! the coverage-guided targets in `fuzz/` use, plus simple deterministic mutations of each
//! seed, so every CI run re-checks the invariants of `vouch::fuzzing` in bounded time.

use std::path::PathBuf;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("provider_request", vouch::fuzzing::provider_request),
    ("image_reference", vouch::fuzzing::image_reference),
    ("claim_key", vouch::fuzzing::claim_key),
    ("config", vouch::fuzzing::config),
    ("cosign_signature", vouch::fuzzing::cosign_signature),
    ("notation_envelope", vouch::fuzzing::notation_envelope),
    ("registry_document", vouch::fuzzing::registry_document),
    ("sigstore_bundle", vouch::fuzzing::sigstore_bundle),
    ("keyless_annotations", vouch::fuzzing::keyless_annotations),
    ("namespaced_key", vouch::fuzzing::namespaced_key),
];

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| std::fs::read(e.path()).expect("seed"))
        .collect();
    out.sort();
    out
}

/// Every single-byte flip of the first 256 bytes, every truncation of the first 64 lengths,
/// and the seed doubled.
fn mutations(seed: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..seed.len().min(256) {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut m = seed.to_vec();
            m[i] ^= mask;
            out.push(m);
        }
    }
    for len in 0..seed.len().min(64) {
        out.push(seed[..len].to_vec());
    }
    out.push([seed, seed].concat());
    out
}

#[test]
fn seeds_and_their_mutations_keep_every_invariant() {
    for (name, target) in TARGETS {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "{name} has seeds");
        let mut runs = 0;
        for seed in &seeds {
            target(seed);
            for m in mutations(seed) {
                target(&m);
                runs += 1;
            }
        }
        println!(
            "fuzz replay: {name}: {} seeds, {runs} mutations",
            seeds.len()
        );
    }
}

#[test]
fn the_known_good_cosign_signature_does_verify() {
    // Guards the cosign invariant from passing vacuously: the unmutated pair verifies, so a
    // mutation that verified would be caught by the assertion inside the target.
    let payload = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/fixtures/cosign-payload.json"),
    )
    .expect("payload");
    let sig = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/fixtures/cosign-signature.b64"),
    )
    .expect("sig");
    let digest = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/fixtures/cosign-digest.txt"),
    )
    .expect("digest");
    let key_pem =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/fixtures/cosign.pub"))
            .expect("key");
    let key = vouch::internal::cosign::PublicKey::from_pem("fixture", &key_pem).expect("key");
    let c = vouch::internal::cosign::Candidate {
        payload,
        signature_b64: Some(sig.trim().to_string()),
    };
    assert_eq!(
        vouch::internal::cosign::check(&c, &[key], digest.trim()).failure,
        None
    );
}
