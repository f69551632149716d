"""Errors of the licensing (trust) library.

Exception tree (every class of the part; each line: class, ``code``, meaning)::

    LicensingError                      licensing_error: root; every failure of this part
    +-- TransparencyLogError            tlog_error: transparency log (licensing.tlog)
    |   +-- TlogProofInvalidError       tlog_proof_invalid: a proof does not verify
    |   +-- TlogRangeError              tlog_range_invalid: index or size outside the tree
    |   +-- TlogNodeMissingError        tlog_node_missing: the store lacks a needed node
    |   +-- TlogInconsistentError       tlog_inconsistent: stored data contradict (fork)
    |   +-- NoteMalformedError          note_malformed: not a c2sp.org/signed-note
    |   +-- NoteKeyInvalidError         note_key_invalid: malformed signer/verifier key
    |   +-- NoteSignatureInvalidError   note_signature_invalid: a trusted signature fails
    |   +-- NoteUnverifiedError         note_unverified: no signature from a trusted key
    |   +-- CheckpointMalformedError    checkpoint_malformed: not a tlog-checkpoint body
    |   +-- ReceiptMalformedError       receipt_malformed: not a tlog-proof@v1 receipt
    |   +-- CosignatureInvalidError     cosignature_invalid: a witness cosignature fails
    |   +-- WitnessError                witness_error: the tlog-witness exchange
    |       +-- WitnessRequestMalformedError  witness_request_malformed: bad add-checkpoint
    |       +-- WitnessUnknownLogError        witness_unknown_log: not a log it witnesses
    |       +-- WitnessForbiddenError         witness_forbidden: signed by an untrusted key
    |       +-- WitnessConflictError          witness_conflict: old size is not its size
    |       +-- WitnessProofInvalidError      witness_proof_invalid: consistency fails
    +-- CanonicalJSONError              canonical_json_invalid: no canonical JSON form
    +-- TierFileInvalidError            tier_file_invalid: a bad file entry (path, digest, size)
    +-- KeyMaterialError                key_error: key loading, saving and type errors
    |   +-- KeyFormatError              key_invalid: not a PEM key we can read
    |   +-- KeyEncryptedError           key_encrypted: the PEM key is password protected
    |   +-- UnsupportedKeyError         key_unsupported: RSA, another curve, wrong key type
    |   +-- KeyExistsError              key_exists: refusing to overwrite a key file
    +-- EnvelopeError                   envelope_error: DSSE envelope problems
    |   +-- EnvelopeFormatError         envelope_malformed: not a DSSE JSON envelope
    |   +-- EnvelopeTooLargeError       envelope_too_large: larger than the caller's bound
    |   +-- SignatureVerificationError  signature_invalid: no trusted key verifies it
    +-- StatementFormatError            statement_malformed: not an in-toto Statement v1
    +-- ModelBundleError                model_bundle_error: model_signing Sigstore bundles
    |   +-- ModelBundleFormatError      model_bundle_malformed: bundle/envelope malformed
    |   +-- ModelBundleSignatureError   model_bundle_signature_invalid: not signed by the key
    |   +-- ModelManifestMismatchError  model_bundle_manifest_mismatch: subject digest differs
    +-- ReleaseStatementError           release_statement_invalid: cannot build or parse
    +-- CardRevisionError               card_revision_invalid: a signed card revision
    +-- AttestationError                attestation_invalid: usage attestation verification
        +-- AttestationMalformedError         attestation_malformed
        +-- AttestationTooLargeError          attestation_too_large
        +-- AttestationSignatureInvalidError  attestation_signature_invalid
        +-- AttestationKeyMismatchError       attestation_key_mismatch
        +-- AttestationWrongSubjectError      attestation_wrong_subject
        +-- AttestationWrongTierError         attestation_wrong_tier
        +-- AttestationStaleTermsError        attestation_stale_terms
        +-- AttestationMissingFieldError      attestation_missing_field
        +-- AttestationExpiredError           attestation_expired
        +-- AttestationNotYetValidError       attestation_not_yet_valid
        +-- AttestationLifetimeTooLongError   attestation_lifetime_too_long

Every class carries a stable ``code`` that the gateway and the CLI show to people.
"""

from __future__ import annotations


class LicensingError(Exception):
    """Root of every error raised by :mod:`licensing`."""

    code = "licensing_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransparencyLogError(LicensingError):
    """Root of the transparency-log errors (:mod:`licensing.tlog`)."""

    code = "tlog_error"


class TlogProofInvalidError(TransparencyLogError):
    """An inclusion or consistency proof does not verify (or is malformed)."""

    code = "tlog_proof_invalid"


class TlogRangeError(TransparencyLogError):
    """A proof was requested for an index or size outside the tree."""

    code = "tlog_range_invalid"


class TlogNodeMissingError(TransparencyLogError):
    """The node store lacks a node the tree of this size must have."""

    code = "tlog_node_missing"


class TlogInconsistentError(TransparencyLogError):
    """Stored log data or two checkpoints contradict each other (tampering or a fork)."""

    code = "tlog_inconsistent"


class NoteMalformedError(TransparencyLogError):
    """A signed note does not follow c2sp.org/signed-note."""

    code = "note_malformed"


class NoteKeyInvalidError(TransparencyLogError):
    """A note signer or verifier key string is malformed."""

    code = "note_key_invalid"


class NoteSignatureInvalidError(TransparencyLogError):
    """A signature from a trusted key does not verify over the note text."""

    code = "note_signature_invalid"


class NoteUnverifiedError(TransparencyLogError):
    """No signature in the note comes from a trusted key."""

    code = "note_unverified"


class CheckpointMalformedError(TransparencyLogError):
    """A checkpoint body does not follow c2sp.org/tlog-checkpoint."""

    code = "checkpoint_malformed"


class ReceiptMalformedError(TransparencyLogError):
    """A receipt does not follow c2sp.org/tlog-proof@v1."""

    code = "receipt_malformed"


class CosignatureInvalidError(TransparencyLogError):
    """A c2sp.org/tlog-cosignature line is malformed or does not verify, or too few verify."""

    code = "cosignature_invalid"


class WitnessError(TransparencyLogError):
    """Root of the refusals of a c2sp.org/tlog-witness witness; ``status`` is the HTTP status."""

    code = "witness_error"
    status = 400


class WitnessRequestMalformedError(WitnessError):
    """The add-checkpoint body is malformed, or its old size is past the checkpoint's."""

    code = "witness_request_malformed"
    status = 400


class WitnessUnknownLogError(WitnessError):
    """The checkpoint's origin is not a log this witness is configured for."""

    code = "witness_unknown_log"
    status = 404


class WitnessForbiddenError(WitnessError):
    """No signature on the checkpoint verifies with a key the witness trusts for its origin."""

    code = "witness_forbidden"
    status = 403


class WitnessConflictError(WitnessError):
    """The old size is not the size the witness last cosigned; ``known_size`` is that size."""

    code = "witness_conflict"
    status = 409

    def __init__(self, message: str, known_size: int) -> None:
        super().__init__(message)
        self.known_size = known_size


class WitnessProofInvalidError(WitnessError):
    """The consistency proof does not verify: the checkpoint does not extend the last one."""

    code = "witness_proof_invalid"
    status = 422


class CanonicalJSONError(LicensingError):
    """A value cannot be written as canonical JSON, or JSON text breaks our strict profile."""

    code = "canonical_json_invalid"


class TierFileInvalidError(LicensingError):
    """A file entry of a tier has an unclean path, a malformed sha256 or an impossible size."""

    code = "tier_file_invalid"


class KeyMaterialError(LicensingError):
    """Root of key loading, saving and key type errors."""

    code = "key_error"


class KeyFormatError(KeyMaterialError):
    """The bytes are not a PEM key we can read."""

    code = "key_invalid"


class KeyEncryptedError(KeyMaterialError):
    """The PEM private key is encrypted; tiergate keys are stored unencrypted with mode 0600."""

    code = "key_encrypted"


class UnsupportedKeyError(KeyMaterialError):
    """RSA, a curve other than P-256, or a key type the operation does not accept."""

    code = "key_unsupported"


class KeyExistsError(KeyMaterialError):
    """The key file already exists and overwriting was not asked for."""

    code = "key_exists"


class EnvelopeError(LicensingError):
    """Root of DSSE envelope errors."""

    code = "envelope_error"


class EnvelopeFormatError(EnvelopeError):
    """The bytes are not a well-formed DSSE JSON envelope."""

    code = "envelope_malformed"


class EnvelopeTooLargeError(EnvelopeError):
    """The envelope is larger than the caller's bound."""

    code = "envelope_too_large"


class SignatureVerificationError(EnvelopeError):
    """No signature of the envelope verifies under any trusted key."""

    code = "signature_invalid"


class StatementFormatError(LicensingError):
    """The payload is not a well-formed in-toto Statement v1 of the expected predicate type."""

    code = "statement_malformed"


class ModelBundleError(LicensingError):
    """Root of errors about model_signing-compatible Sigstore bundles."""

    code = "model_bundle_error"


class ModelBundleFormatError(ModelBundleError):
    """The bundle, its envelope or its statement is malformed."""

    code = "model_bundle_malformed"


class ModelBundleSignatureError(ModelBundleError):
    """The bundle is not signed by the given public key."""

    code = "model_bundle_signature_invalid"


class ModelManifestMismatchError(ModelBundleError):
    """The statement's subject digest does not match its resources."""

    code = "model_bundle_manifest_mismatch"


class ReleaseStatementError(LicensingError):
    """A release statement cannot be built, or a signed one does not parse or verify."""

    code = "release_statement_invalid"


class CardRevisionError(LicensingError):
    """A card revision statement cannot be built, or a signed one does not parse or verify."""

    code = "card_revision_invalid"


class AttestationError(LicensingError):
    """Root of usage attestation verification errors; each reason has its own subclass."""

    code = "attestation_invalid"


class AttestationMalformedError(AttestationError):
    """Not a well-formed usage attestation envelope, statement or predicate."""

    code = "attestation_malformed"


class AttestationTooLargeError(AttestationError):
    """The attestation is larger than the verifier's bound."""

    code = "attestation_too_large"


class AttestationSignatureInvalidError(AttestationError):
    """No trusted requester key verifies the attestation."""

    code = "attestation_signature_invalid"


class AttestationKeyMismatchError(AttestationError):
    """The predicate names a requester key other than the one that signed it."""

    code = "attestation_key_mismatch"


class AttestationWrongSubjectError(AttestationError):
    """The attestation is about another release (or another release digest)."""

    code = "attestation_wrong_subject"


class AttestationWrongTierError(AttestationError):
    """The attestation asks for another tier than the one being granted."""

    code = "attestation_wrong_tier"


class AttestationStaleTermsError(AttestationError):
    """The accepted terms digest is not the release's current terms digest."""

    code = "attestation_stale_terms"


class AttestationMissingFieldError(AttestationError):
    """A field the publisher requires is absent or empty."""

    code = "attestation_missing_field"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class AttestationExpiredError(AttestationError):
    """The attestation's ``expires_at`` has passed (beyond the allowed clock skew)."""

    code = "attestation_expired"


class AttestationNotYetValidError(AttestationError):
    """The attestation's ``issued_at`` is in the future (beyond the allowed clock skew)."""

    code = "attestation_not_yet_valid"


class AttestationLifetimeTooLongError(AttestationError):
    """``expires_at - issued_at`` exceeds the verifier's maximum lifetime."""

    code = "attestation_lifetime_too_long"
